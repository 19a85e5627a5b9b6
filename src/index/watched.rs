//! One watched kind: the store every reader shares, the writer that fills it (from
//! its watch task, or by hand in tests, benches and the fuzz harness), the feeds of
//! the controllers that react to its changes, and optional secondary [`Groups`].

use std::{
    hash::Hash,
    sync::{Arc, Mutex, PoisonError},
};

use futures::Stream;
use kube::{
    Resource,
    runtime::{
        reflector::{Lookup, ObjectRef, Store, store::Writer},
        watcher,
    },
};
use tokio::sync::mpsc;

use super::groups::Groups;

/// The objects a watch added, changed or deleted, as a controller takes triggers.
pub type Feed<K> = std::pin::Pin<Box<dyn Stream<Item = K> + Send>>;

/// A watched kind, cheap to clone (all clones share one store).
pub struct Watched<K: Lookup + Clone + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    inner: Arc<Inner<K>>,
}

impl<K: Lookup + Clone + 'static> Clone for Watched<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

struct Inner<K: Lookup + Clone + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    /// The kind's plural, as metrics and `/readyz` name its watch.
    name: &'static str,
    dyntype: K::DynamicType,
    store: Store<K>,
    filling: Mutex<Filling<K>>,
    subscribers: Subscribers<K>,
    groups: Option<Groups<K>>,
}

/// What applying an event changes besides the store.
struct Filling<K: Lookup + Clone + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    writer: Writer<K>,
    relay: Relay<K>,
}

impl<K> Watched<K>
where
    K: Lookup + Resource + Clone + Send + Sync + 'static,
    <K as Lookup>::DynamicType: Eq + Hash + Clone + Default,
{
    /// An empty store of a kind whose type says what it is.
    pub fn new(name: &'static str, groups: Option<Groups<K>>) -> Self {
        Self::with_dyntype(name, Default::default(), groups)
    }
}

impl<K> Watched<K>
where
    K: Lookup + Resource + Clone + Send + Sync + 'static,
    <K as Lookup>::DynamicType: Eq + Hash + Clone,
{
    /// An empty store of a kind known at run time (Argo CD's Applications).
    pub fn with_dyntype(name: &'static str, dyntype: <K as Lookup>::DynamicType, groups: Option<Groups<K>>) -> Self {
        let writer = Writer::new(dyntype.clone());
        let store = writer.as_reader();
        let filling = Mutex::new(Filling { writer, relay: Relay::default() });
        let subscribers = Subscribers::new();
        Self { inner: Arc::new(Inner { name, dyntype, store, filling, subscribers, groups }) }
    }

    pub fn name(&self) -> &'static str {
        self.inner.name
    }

    /// The store: `get` by reference, `state` for everything.
    pub fn store(&self) -> &Store<K> {
        &self.inner.store
    }

    pub fn get(&self, key: &ObjectRef<K>) -> Option<Arc<K>> {
        self.inner.store.get(key)
    }

    pub fn state(&self) -> Vec<Arc<K>> {
        self.inner.store.state()
    }

    /// Whether the store holds its first full list. Asks with a fresh future each time:
    /// a waiter parked in `wait_until_ready` before the first list was not always woken
    /// (kube-runtime 5.0), which hung the reconciles that waited.
    pub fn listed(&self) -> bool {
        use futures::FutureExt;
        self.inner.store.wait_until_ready().now_or_never().is_some()
    }

    /// The secondary groups, if this kind keeps any.
    pub(super) fn groups(&self) -> Option<&Groups<K>> {
        self.inner.groups.as_ref()
    }

    /// A feed of every change from now on.
    pub fn subscribe(&self) -> Feed<K> {
        self.inner.subscribers.subscribe()
    }

    /// Applies one watch event: the store, then the groups, then (when the store shows
    /// the change) the subscribers, in that order, so a controller told about an object
    /// finds it wherever it looks.
    pub fn apply(&self, event: watcher::Event<K>) {
        let mut filling = self.inner.filling.lock().unwrap_or_else(PoisonError::into_inner);
        filling.writer.apply_watcher_event(&event);
        if let Some(groups) = &self.inner.groups {
            match &event {
                watcher::Event::Apply(object) => {
                    if let Some(stored) = self.inner.store.get(&object.to_object_ref(self.dyntype())) {
                        groups.put(&id(object), stored);
                    }
                }
                watcher::Event::Delete(object) => groups.remove(&id(object)),
                watcher::Event::InitDone => {
                    groups.replace(self.inner.store.state().into_iter().map(|object| (id(object.as_ref()), object)));
                }
                watcher::Event::Init | watcher::Event::InitApply(_) => {}
            }
        }
        for object in filling.relay.deliver(event) {
            self.inner.subscribers.send(&object);
        }
    }

    /// Fills the store by hand with exactly `objects`, as a first list would (tests,
    /// benches and the fuzz harness).
    pub fn fill(&self, objects: impl IntoIterator<Item = K>) {
        self.apply(watcher::Event::Init);
        for object in objects {
            self.apply(watcher::Event::InitApply(object));
        }
        self.apply(watcher::Event::InitDone);
    }

    pub fn dyntype(&self) -> <K as Lookup>::DynamicType {
        self.inner.dyntype.clone()
    }
}

/// An object's key within its kind: `namespace/name`, or `name` for cluster objects.
fn id<K: Resource>(object: &K) -> String {
    let meta = object.meta();
    match &meta.namespace {
        Some(namespace) => format!("{namespace}/{}", meta.name.as_deref().unwrap_or_default()),
        None => meta.name.clone().unwrap_or_default(),
    }
}

/// The controllers told about one kind's changes; each gets every change from the
/// moment it subscribed. Unbounded, so a busy controller never holds a watch back:
/// what waits here is at most one entry per change, and a controller's scheduler
/// takes them as fast as they come (it coalesces them per object).
struct Subscribers<K>(Mutex<Vec<mpsc::UnboundedSender<K>>>);

impl<K: Clone + Send + 'static> Subscribers<K> {
    fn new() -> Self {
        Self(Mutex::default())
    }

    fn subscribe(&self) -> Feed<K> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(sender);
        Box::pin(futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|object| (object, receiver))
        }))
    }

    fn send(&self, object: &K) {
        // A controller that stopped (shutdown) no longer listens.
        self.0.lock().unwrap_or_else(PoisonError::into_inner).retain(|sender| sender.send(object.clone()).is_ok());
    }
}

/// Which objects of a watch event to tell the controllers about, and when. The store
/// takes a (re-)list's objects all at once at its end, so they are told then: told
/// during the list, a controller read the object from the store before it was there
/// (a request created or edited while the apiserver was away was then never
/// reconciled: `ObjectNotFound`, or its old generation reconciled again).
struct Relay<K> {
    listed: Vec<K>,
}

impl<K> Default for Relay<K> {
    fn default() -> Self {
        Self { listed: Vec::new() }
    }
}

impl<K> Relay<K> {
    fn deliver(&mut self, event: watcher::Event<K>) -> Vec<K> {
        match event {
            watcher::Event::Apply(object) | watcher::Event::Delete(object) => vec![object],
            watcher::Event::Init => {
                self.listed.clear();
                Vec::new()
            }
            watcher::Event::InitApply(object) => {
                self.listed.push(object);
                Vec::new()
            }
            watcher::Event::InitDone => std::mem::take(&mut self.listed),
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[test]
    fn a_lists_objects_are_told_at_its_end_when_the_store_holds_them_and_changes_at_once() {
        let mut relay = Relay::default();
        assert!(relay.deliver(watcher::Event::Init).is_empty());
        assert!(relay.deliver(watcher::Event::InitApply("a")).is_empty());
        assert!(relay.deliver(watcher::Event::InitApply("b")).is_empty());
        assert_eq!(relay.deliver(watcher::Event::InitDone), ["a", "b"]);
        assert_eq!(relay.deliver(watcher::Event::Apply("c")), ["c"]);
        assert_eq!(relay.deliver(watcher::Event::Delete("a")), ["a"]);
        // A list cut short by an error starts over: only the new list is told.
        assert!(relay.deliver(watcher::Event::Init).is_empty());
        relay.deliver(watcher::Event::InitApply("stale"));
        relay.deliver(watcher::Event::Init);
        relay.deliver(watcher::Event::InitApply("d"));
        assert_eq!(relay.deliver(watcher::Event::InitDone), ["d"]);
        assert!(relay.deliver(watcher::Event::InitDone).is_empty());
    }

    #[tokio::test]
    async fn every_subscriber_gets_every_change_and_a_gone_one_is_dropped() {
        let subscribers = Subscribers::<u32>::new();
        let (mut first, second) = (subscribers.subscribe(), subscribers.subscribe());
        subscribers.send(&1);
        drop(second);
        subscribers.send(&2);
        assert_eq!(subscribers.0.lock().map(|s| s.len()).unwrap_or_default(), 1);
        assert_eq!(first.next().await, Some(1));
        assert_eq!(first.next().await, Some(2));
    }
}
