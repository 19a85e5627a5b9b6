//! Secondary indexes over one kind's store: its objects grouped by a key (a request's
//! namespace, class or tenant), so a question about one group costs O(that group),
//! not O(every cached object). A budget decision in a tenant of 10 requests does not
//! walk the 10,000 requests of other tenants.

use std::{
    collections::HashMap,
    sync::{Arc, PoisonError, RwLock},
};

/// The key an object is grouped under, if it has one. A pure function of the object:
/// it is asked again, of the copy held, when the object moves or goes.
pub type GroupKey<K> = fn(&K) -> Option<&str>;

/// The pair of names an object is counted under, and the group it is counted in, if it
/// is counted rather than held (a provisioned request: its namespace, tenant and class).
pub type TallyKey<K> = fn(&K) -> Option<(&str, (&str, &str))>;

/// Counts of a group's tallied objects by their pair of names.
pub type Counts = Vec<((String, String), u32)>;

/// Objects grouped by each of `keys`; every group maps `namespace/name` to the object
/// (the same `Arc` the store holds, so nothing is copied). Optionally some objects are
/// also counted ([`Groups::with_tally`]).
pub struct Groups<K> {
    keys: Vec<GroupKey<K>>,
    tally: Option<TallyKey<K>>,
    state: RwLock<State<K>>,
}

/// An object's id (`namespace/name`), allocated once and shared by every map it is in.
type Id = Arc<str>;

struct State<K> {
    /// One map per key: group → object id → object.
    by_key: Vec<HashMap<String, HashMap<Id, Arc<K>>>>,
    /// Every object held, by id. Where an object was grouped and counted is computed
    /// again from this copy when it moves or goes (the keys are pure functions of the
    /// object), rather than kept beside it: at 10,000 requests those copies of names
    /// were a tenth of the index.
    objects: HashMap<Id, Arc<K>>,
    /// Tallied objects: group → pair of names → how many.
    counts: HashMap<String, HashMap<(String, String), u32>>,
}

impl<K> Groups<K> {
    pub fn new(keys: Vec<GroupKey<K>>) -> Self {
        let state = State {
            by_key: keys.iter().map(|_| HashMap::new()).collect(),
            objects: HashMap::new(),
            counts: HashMap::new(),
        };
        Self { keys, tally: None, state: RwLock::new(state) }
    }

    /// Also counts the objects `tally` names a group and a pair of names for.
    pub fn with_tally(mut self, tally: TallyKey<K>) -> Self {
        self.tally = Some(tally);
        self
    }

    /// Puts `object` (stored under `id`) in its groups, out of those it was in before.
    pub fn put(&self, id: &str, object: Arc<K>) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.remove(&self.keys, self.tally, id);
        state.insert(&self.keys, self.tally, id.into(), object);
    }

    /// Takes the object stored under `id` out of every group.
    pub fn remove(&self, id: &str) {
        self.state.write().unwrap_or_else(PoisonError::into_inner).remove(&self.keys, self.tally, id);
    }

    /// Starts over from `objects` (after a re-list), each with its id.
    pub fn replace(&self, objects: impl IntoIterator<Item = (String, Arc<K>)>) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.by_key.iter_mut().for_each(HashMap::clear);
        state.objects.clear();
        state.counts.clear();
        for (id, object) in objects {
            state.insert(&self.keys, self.tally, id.into(), object);
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

    /// The objects whose `key`-th key is `group`, and the counts of the objects tallied
    /// in `group`, leaving out the object stored under `excluding`; read at one moment.
    pub fn get_with_counts(&self, key: usize, group: &str, excluding: &str) -> (Counts, Vec<Arc<K>>) {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let objects = state
            .by_key
            .get(key)
            .and_then(|groups| groups.get(group))
            .map(|g| g.iter().filter(|(id, _)| id.as_ref() != excluding).map(|(_, o)| o.clone()).collect())
            .unwrap_or_default();
        let left_out = state
            .objects
            .get(excluding)
            .and_then(|object| self.tally.and_then(|tally| tally(object)))
            .filter(|(of, _)| *of == group)
            .map(|(_, names)| names);
        let counts = state
            .counts
            .get(group)
            .map(|counts| {
                counts
                    .iter()
                    .map(|(names, count)| {
                        let left_out = left_out.is_some_and(|(a, b)| names.0 == a && names.1 == b);
                        (names.clone(), count - u32::from(left_out))
                    })
                    .filter(|(_, count)| *count > 0)
                    .collect()
            })
            .unwrap_or_default();
        (counts, objects)
    }

    /// How many objects are in `group` of the `key`-th key.
    pub fn count(&self, key: usize, group: &str) -> usize {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state.by_key.get(key).and_then(|groups| groups.get(group)).map_or(0, HashMap::len)
    }
}

impl<K> State<K> {
    fn insert(&mut self, keys: &[GroupKey<K>], tally: Option<TallyKey<K>>, id: Id, object: Arc<K>) {
        if let Some((group, (first, second))) = tally.and_then(|tally| tally(&object)) {
            let counts = self.counts.entry(group.to_owned()).or_default();
            *counts.entry((first.to_owned(), second.to_owned())).or_default() += 1;
        }
        for (groups, key) in self.by_key.iter_mut().zip(keys) {
            if let Some(group) = key(&object) {
                groups.entry(group.to_owned()).or_default().insert(id.clone(), object.clone());
            }
        }
        self.objects.insert(id, object);
    }

    fn remove(&mut self, keys: &[GroupKey<K>], tally: Option<TallyKey<K>>, id: &str) {
        let Some(old) = self.objects.remove(id) else {
            return;
        };
        if let Some((group, (first, second))) = tally.and_then(|tally| tally(&old))
            && let Some(counts) = self.counts.get_mut(group)
        {
            let names = (first.to_owned(), second.to_owned());
            if let Some(count) = counts.get_mut(&names) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&names);
                }
            }
            if counts.is_empty() {
                self.counts.remove(group);
            }
        }
        for (groups, key) in self.by_key.iter_mut().zip(keys) {
            let Some(group) = key(&old) else { continue };
            if let Some(members) = groups.get_mut(group) {
                members.remove(id);
                if members.is_empty() {
                    groups.remove(group);
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
    fn tallied_objects_are_counted_by_their_names_and_move_when_those_change() {
        // (name, group, counted under (a, b) when Some)
        type Counted = (&'static str, &'static str, Option<(&'static str, &'static str)>);
        let groups: Groups<Counted> = Groups::new(vec![|c: &Counted| c.2.is_none().then_some(c.1)])
            .with_tally(|c: &Counted| c.2.map(|names| (c.1, names)));
        groups.put("x", Arc::new(("x", "ns", Some(("t", "preview")))));
        groups.put("y", Arc::new(("y", "ns", Some(("t", "preview")))));
        groups.put("z", Arc::new(("z", "ns", None)));
        let counts = |excluding: &str| {
            let (mut counts, held) = groups.get_with_counts(0, "ns", excluding);
            counts.sort();
            let mut held: Vec<&str> = held.iter().map(|o| o.0).collect();
            held.sort_unstable();
            (counts, held)
        };
        let preview = |n| vec![(("t".to_owned(), "preview".to_owned()), n)];
        assert_eq!(counts(""), (preview(2), vec!["z"]));
        // Leaving one out, counted or held.
        assert_eq!(counts("x"), (preview(1), vec!["z"]));
        assert_eq!(counts("z"), (preview(2), vec![]));
        // `x` is no longer counted (held instead), `z` now is, under other names.
        groups.put("x", Arc::new(("x", "ns", None)));
        groups.put("z", Arc::new(("z", "ns", Some(("t", "production")))));
        let (counts_now, held) = counts("");
        assert_eq!(held, ["x"]);
        assert_eq!(
            counts_now,
            vec![(("t".to_owned(), "preview".to_owned()), 1), (("t".to_owned(), "production".to_owned()), 1)]
        );
        groups.remove("y");
        groups.remove("z");
        assert_eq!(counts(""), (vec![], vec!["x"]));
        // A relist starts the counts over.
        groups.replace([("w".to_owned(), Arc::new(("w", "ns", Some(("t", "preview")))))]);
        assert_eq!(counts(""), (preview(1), vec![]));
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
