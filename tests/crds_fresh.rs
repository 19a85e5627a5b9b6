//! The committed `crds/*.yaml` must be exactly what the Rust types generate, so
//! the CRDs people `kubectl apply` never lag behind the code.

use std::path::Path;

#[test]
fn committed_crds_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let files = berth::api::crd_files().expect("CRDs serialize");
    assert_eq!(files.len(), 4, "one file per kind");
    for (name, generated) in files {
        let path = dir.join(name);
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}; run `just crds`", path.display()));
        assert!(
            committed == generated,
            "{} is stale: run `just crds` (berth crdgen --out crds) and commit the result",
            path.display()
        );
    }
    let on_disk = std::fs::read_dir(&dir).expect("crds/ exists").count();
    assert_eq!(on_disk, 4, "crds/ holds a file that no type generates");
}
