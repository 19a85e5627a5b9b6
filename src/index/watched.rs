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

/// The objects a watch added, changed or deleted, as a controller takes triggers: the
/// store's own copies (a deleted object as the deletion event carries it), shared, not
/// cloned, so a burst of 10,000 requests is held once however many controllers it wakes.
pub type Feed<K> = std::pin::Pin<Box<dyn Stream<Item = Arc<K>> + Send>>;

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
    relay: Relay<ObjectRef<K>>,
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
        // A re-list drops what it no longer holds: deleted while the watch was away.
        let before_list = matches!(event, watcher::Event::InitDone).then(|| self.inner.store.state());
        filling.writer.apply_watcher_event(&event);
        let stored = |object: &K| self.inner.store.get(&object.to_object_ref(self.dyntype()));
        if let Some(groups) = &self.inner.groups {
            match &event {
                watcher::Event::Apply(object) => {
                    if let Some(stored) = stored(object) {
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
        let told: Vec<Arc<K>> = match event {
            watcher::Event::Apply(object) => vec![stored(&object).unwrap_or_else(|| Arc::new(object))],
            watcher::Event::Delete(object) => vec![Arc::new(object)],
            watcher::Event::Init => filling.relay.begin(),
            watcher::Event::InitApply(object) => filling.relay.listed(object.to_object_ref(self.dyntype())),
            watcher::Event::InitDone => {
                let listed = filling.relay.done().into_iter().filter_map(|key| self.inner.store.get(&key));
                let gone = before_list.unwrap_or_default().into_iter().filter(|old| stored(old).is_none());
                listed.chain(gone).collect()
            }
        };
        for object in told {
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
struct Subscribers<K>(Mutex<Vec<mpsc::UnboundedSender<Arc<K>>>>);

impl<K: Send + Sync + 'static> Subscribers<K> {
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

    fn send(&self, object: &Arc<K>) {
        // A controller that stopped (shutdown) no longer listens.
        self.0.lock().unwrap_or_else(PoisonError::into_inner).retain(|sender| sender.send(object.clone()).is_ok());
    }
}

/// Which objects of a (re-)list to tell the controllers about, and when. The store
/// takes a list's objects all at once at its end, so they are told then, as the store
/// holds them: told during the list, a controller read the object from the store
/// before it was there (a request created or edited while the apiserver was away was
/// then never reconciled: `ObjectNotFound`, or its old generation reconciled again).
/// What the store held and the new list does not (deleted meanwhile) is told then too.
/// Changes outside a list are told at once. Holds keys, not objects: the store's
/// writer already buffers the list.
struct Relay<R> {
    listed: Vec<R>,
}

impl<R> Default for Relay<R> {
    fn default() -> Self {
        Self { listed: Vec::new() }
    }
}

impl<R> Relay<R> {
    /// A list starts (again): what an earlier one cut short listed is forgotten.
    fn begin<T>(&mut self) -> Vec<T> {
        self.listed.clear();
        Vec::new()
    }

    /// One object of the list, told at its end.
    fn listed<T>(&mut self, key: R) -> Vec<T> {
        self.listed.push(key);
        Vec::new()
    }

    /// The list is complete: every key it listed.
    fn done(&mut self) -> Vec<R> {
        std::mem::take(&mut self.listed)
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[test]
    fn a_lists_objects_are_told_at_its_end_and_a_list_cut_short_is_forgotten() {
        let mut relay = Relay::default();
        assert!(relay.begin::<()>().is_empty());
        assert!(relay.listed::<()>("a").is_empty());
        assert!(relay.listed::<()>("b").is_empty());
        assert_eq!(relay.done(), ["a", "b"]);
        // A list cut short by an error starts over: only the new list is told.
        relay.begin::<()>();
        relay.listed::<()>("stale");
        relay.begin::<()>();
        relay.listed::<()>("d");
        assert_eq!(relay.done(), ["d"]);
        assert!(relay.done().is_empty());
    }

    #[tokio::test]
    async fn every_subscriber_gets_every_change_and_a_gone_one_is_dropped() {
        let subscribers = Subscribers::<u32>::new();
        let (mut first, second) = (subscribers.subscribe(), subscribers.subscribe());
        let one = Arc::new(1);
        subscribers.send(&one);
        drop(second);
        subscribers.send(&Arc::new(2));
        assert_eq!(subscribers.0.lock().map(|s| s.len()).unwrap_or_default(), 1);
        let told = first.next().await.expect("told");
        assert!(Arc::ptr_eq(&told, &one), "the sender's copy, shared");
        assert_eq!(first.next().await.as_deref(), Some(&2));
    }
}
