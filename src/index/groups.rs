//! Secondary indexes over one kind's store: its objects grouped by a key (a request's
//! namespace, class or tenant), so a question about one group costs O(that group),
//! not O(every cached object). A budget decision in a tenant of 10 requests does not
//! walk the 10,000 requests of other tenants.

use std::{
    collections::HashMap,
    sync::{Arc, PoisonError, RwLock},
};

/// The key an object is grouped under, if it has one.
pub type GroupKey<K> = fn(&K) -> Option<&str>;

/// Objects grouped by each of `keys`; every group maps `namespace/name` to the object
/// (the same `Arc` the store holds, so nothing is copied).
pub struct Groups<K> {
    keys: Vec<GroupKey<K>>,
    state: RwLock<State<K>>,
}

struct State<K> {
    /// One map per key: group → object key → object.
    by_key: Vec<HashMap<String, HashMap<String, Arc<K>>>>,
    /// The groups each object is in now, so an update can move it.
    placed: HashMap<String, Vec<Option<String>>>,
}

impl<K> Groups<K> {
    pub fn new(keys: Vec<GroupKey<K>>) -> Self {
        let state = State { by_key: keys.iter().map(|_| HashMap::new()).collect(), placed: HashMap::new() };
        Self { keys, state: RwLock::new(state) }
    }

    /// Puts `object` (stored under `id`) in its groups, out of those it was in before.
    pub fn put(&self, id: &str, object: Arc<K>) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.remove(id);
        state.insert(&self.keys, id, object);
    }

    /// Takes the object stored under `id` out of every group.
    pub fn remove(&self, id: &str) {
        self.state.write().unwrap_or_else(PoisonError::into_inner).remove(id);
    }

    /// Starts over from `objects` (after a re-list), each with its id.
    pub fn replace(&self, objects: impl IntoIterator<Item = (String, Arc<K>)>) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.by_key.iter_mut().for_each(HashMap::clear);
        state.placed.clear();
        for (id, object) in objects {
            state.insert(&self.keys, &id, object);
        }
    }

    /// The objects whose `key`-th key is `group`.
    pub fn get(&self, key: usize, group: &str) -> Vec<Arc<K>> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state
            .by_key
            .get(key)
            .and_then(|groups| groups.get(group))
            .map(|g| g.values().cloned().collect())
            .unwrap_or_default()
    }

    /// How many objects are in `group` of the `key`-th key.
    pub fn count(&self, key: usize, group: &str) -> usize {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state.by_key.get(key).and_then(|groups| groups.get(group)).map_or(0, HashMap::len)
    }
}

impl<K> State<K> {
    fn insert(&mut self, keys: &[GroupKey<K>], id: &str, object: Arc<K>) {
        let placed: Vec<Option<String>> = keys.iter().map(|key| key(&object).map(str::to_owned)).collect();
        for (groups, group) in self.by_key.iter_mut().zip(&placed) {
            if let Some(group) = group {
                groups.entry(group.clone()).or_default().insert(id.to_owned(), object.clone());
            }
        }
        self.placed.insert(id.to_owned(), placed);
    }

    fn remove(&mut self, id: &str) {
        let Some(placed) = self.placed.remove(id) else {
            return;
        };
        for (groups, group) in self.by_key.iter_mut().zip(placed) {
            let Some(group) = group else { continue };
            if let Some(members) = groups.get_mut(&group) {
                members.remove(id);
                if members.is_empty() {
                    groups.remove(&group);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, group a, group b)
    type Item = (&'static str, &'static str, Option<&'static str>);

    fn groups() -> Groups<Item> {
        Groups::new(vec![|item: &Item| Some(item.1), |item: &Item| item.2])
    }

    fn names(objects: Vec<Arc<Item>>) -> Vec<&'static str> {
        let mut names: Vec<&str> = objects.iter().map(|o| o.0).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn objects_are_found_by_each_key_and_move_when_their_key_changes() {
        let groups = groups();
        groups.put("x", Arc::new(("x", "team-a", Some("preview"))));
        groups.put("y", Arc::new(("y", "team-a", None)));
        groups.put("z", Arc::new(("z", "team-b", Some("preview"))));
        assert_eq!(names(groups.get(0, "team-a")), ["x", "y"]);
        assert_eq!(names(groups.get(1, "preview")), ["x", "z"]);
        assert_eq!(groups.count(1, "production"), 0);

        // `x` changes class: it leaves its old group.
        groups.put("x", Arc::new(("x", "team-a", Some("production"))));
        assert_eq!(names(groups.get(1, "preview")), ["z"]);
        assert_eq!(names(groups.get(1, "production")), ["x"]);
        assert_eq!(groups.count(0, "team-a"), 2, "still once in its unchanged group");

        groups.remove("x");
        groups.remove("never-there");
        assert_eq!(names(groups.get(0, "team-a")), ["y"]);
        assert!(groups.get(1, "production").is_empty());
    }

    #[test]
    fn a_relist_replaces_everything() {
        let groups = groups();
        groups.put("gone", Arc::new(("gone", "team-a", Some("preview"))));
        groups.replace([("new".to_owned(), Arc::new(("new", "team-b", None)))]);
        assert!(groups.get(0, "team-a").is_empty());
        assert!(groups.get(1, "preview").is_empty());
        assert_eq!(names(groups.get(0, "team-b")), ["new"]);
        // The old object is really gone: removing it later changes nothing.
        groups.remove("gone");
        assert_eq!(groups.count(0, "team-b"), 1);
    }
}
