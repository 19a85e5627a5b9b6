//! What makes an EnvironmentClass usable beyond what its CRD's CEL rules check
//! (pure; the class controller reports it in the `Valid` condition).

use crate::api::EnvironmentClass;

/// Problems the CRD's CEL rules cannot see; empty when the class is usable.
pub fn problems(class: &EnvironmentClass) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(ttl) = &class.spec.ttl {
        for (field, value) in [("ttl.default", &ttl.default), ("ttl.max", &ttl.max)] {
            if let Err(e) = value.parse() {
                problems.push(format!("{field}: {e}"));
            }
        }
    }
    // Counted as frozen until fixed (see `crate::freeze`), so the class says why.
    problems.extend(crate::freeze::problems("freezeWindows", &class.spec.freeze_windows));
    if class.spec.quota.is_empty() {
        problems.push("quota is empty: environments would have no ResourceQuota limits".to_owned());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unparsable_ttl_and_an_empty_quota_are_problems_and_the_examples_have_none() {
        let class = crate::testing::class("preview");
        assert!(problems(&class).is_empty(), "{:?}", problems(&class));
        let mut broken = class.clone();
        broken.spec.quota.clear();
        broken.spec.ttl =
            Some(serde_json::from_value(serde_json::json!({"default": "soon", "max": "24h"})).expect("ttl"));
        let found = problems(&broken);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("ttl.default: "), "{found:?}");
        assert!(found[1].contains("quota is empty"), "{found:?}");
        let mut frozen = class.clone();
        let typo = serde_json::json!({"schedule": "0 17 * * 5", "duration": "64h", "timeZone": "Europe/Berlln"});
        frozen.spec.freeze_windows = vec![serde_json::from_value(typo).expect("a window")];
        let found = problems(&frozen);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("freezeWindows[0].timeZone \"Europe/Berlln\" is not an IANA time zone"),
            "{found:?}"
        );
    }
}
