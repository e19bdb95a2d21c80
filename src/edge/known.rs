//! Loads the policy's PDQ deny and allow lists from the Fastly KV Store it names
//! (`edge_moderation::moderation::known` parses and matches them). Each instance serves
//! one request: a list is read at most once per instance, and only when an image is
//! judged. A missing store or key is an empty list; a malformed one is logged to stderr
//! and ignored (the image is judged as if the list were empty), never an error.

use edge_moderation::moderation::known::{KnownList, KnownLists};
use edge_moderation::policy::Policy;
use fastly::kv_store::KVStore;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// Lists read by this instance, by (store, key); None: absent or ignored.
type Read = HashMap<(String, String), Option<Arc<KnownList>>>;

thread_local! {
    static READ: RefCell<Read> = RefCell::new(HashMap::new());
}

/// The lists `policy` names, with its matching settings.
pub fn lists(policy: &Policy) -> KnownLists {
    let settings = &policy.lists;
    let Some(store) = settings.store.as_deref() else {
        return KnownLists::none();
    };
    KnownLists {
        deny: list(store, &settings.deny_key),
        allow: list(store, &settings.allow_key),
        max_distance: settings.max_distance,
        min_quality: settings.min_quality,
        dihedral: settings.dihedral,
    }
}

fn list(store: &str, key: &str) -> Option<Arc<KnownList>> {
    let id = (store.to_string(), key.to_string());
    if let Some(read) = READ.with(|read| read.borrow().get(&id).cloned()) {
        return read;
    }
    let read = read(store, key).map(Arc::new);
    READ.with(|cache| cache.borrow_mut().insert(id, read.clone()));
    read
}

fn read(store: &str, key: &str) -> Option<KnownList> {
    let opened = match KVStore::open(store) {
        Ok(Some(opened)) => opened,
        Ok(None) => {
            eprintln!("moderation: KV store {store:?} for the PDQ lists does not exist");
            return None;
        }
        Err(e) => {
            eprintln!("moderation: KV store {store:?} for the PDQ lists: {e}");
            return None;
        }
    };
    let mut found = match opened.lookup(key) {
        Ok(found) => found,
        // No such key: no list.
        Err(fastly::kv_store::KVStoreError::ItemNotFound) => return None,
        Err(e) => {
            eprintln!("moderation: PDQ list {store:?}/{key:?} unreadable: {e}");
            return None;
        }
    };
    match KnownList::parse(&found.take_body_bytes()) {
        Ok(list) => Some(list),
        Err(e) => {
            eprintln!("moderation: PDQ list {store:?}/{key:?} ignored: {e}");
            None
        }
    }
}
