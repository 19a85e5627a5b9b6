//! Foundation e2e suite against a real kube-apiserver, etcd and
//! kube-controller-manager on loopback: Berth's CRDs, examples and CEL rules as
//! the apiserver sees them, and the test users the later suites rely on.

mod cel_rules;
mod crds;
mod users;

use berth_e2e::fixture::Cluster;

fn cluster() -> &'static Cluster {
    Cluster::shared(env!("CARGO_BIN_EXE_berth-controlplane"))
}

/// A file from `examples/` as YAML.
fn example(name: &str) -> serde_yaml::Value {
    berth::testing::example(name)
}

fn to_yaml(value: &serde_yaml::Value) -> String {
    serde_yaml::to_string(value).unwrap_or_else(|e| panic!("cannot serialize: {e}"))
}
