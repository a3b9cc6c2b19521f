//! The read-model trait and the machinery that lets [`Views`](crate::Views), the
//! projection store, snapshots and `replay` handle every registered model alike.
//!
//! A read model (cqrs-es's `Query`, kube-rs's reflector `Store`) is a fold of decoded
//! events into rows keyed by [`ReadModel::Key`], plus any indexes derived from those
//! rows. Adding one is one type implementing [`ReadModel`] and one registration
//! ([`Views::register`](crate::Views::register), or the built-in list in
//! `Views::default`); nothing else names it.
//!
//! Invariants every model must keep (the store, `merge` and `replay rebuild` rely on
//! them):
//! - `apply` is deterministic and total: the same events in the same per-subject order
//!   give equal rows, and a bad event is reported as [`Invalid`], never a panic.
//! - Rows are the whole persisted state: derived indexes are recomputed from rows by
//!   [`ReadModel::rebuild_indexes`] (after a load or a merge), never stored. A row an
//!   `apply` removes (a deleted identity entity) is deleted from the store at the next
//!   flush, so a restart does not bring it back.
//! - A row only ever depends on the events of its own key, so streams can be folded
//!   apart and merged ([`ReadModel::merge`]) in any order.
//! - [`ReadModel::NAME`] is stable: it names the model's table in `projections.redb` and
//!   its differences in `replay rebuild`. Changing a model's row or key encoding
//!   changes the stored bytes: bump [`crate::store::SCHEMA`].

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{Debug, Display};

use domain::{
    CellName, Event, FloatingIpId, HostName, ImageId, InstanceId, NetworkId, RouterId,
    SecurityGroupId, SubnetPoolId,
};
use eventlog::{Commit, Subject};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The rows of a model, by key (ordered, so listings and diffs are stable).
pub type Table<K, R> = BTreeMap<K, R>;

/// One aggregate's folded state and the last sequence of its subject (the OCC
/// expectation for the next append to that subject).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row<S> {
    pub state: S,
    pub seq: u64,
}

/// A row key, with the byte encoding used as the key of the model's redb table.
pub trait TableKey: Ord + Clone + Debug + Display + Send + Sync + 'static {
    /// The stored key bytes.
    fn to_key_bytes(&self) -> Vec<u8>;
    /// Reads stored key bytes back (an error means a corrupt store).
    fn from_key_bytes(b: &[u8]) -> Result<Self, String>;
}

macro_rules! uuid_key {
    ($t:ty) => {
        impl TableKey for $t {
            fn to_key_bytes(&self) -> Vec<u8> {
                self.0.as_bytes().to_vec()
            }
            fn from_key_bytes(b: &[u8]) -> Result<Self, String> {
                uuid::Uuid::from_slice(b)
                    .map(Self)
                    .map_err(|e| e.to_string())
            }
        }
    };
}
uuid_key!(InstanceId);
uuid_key!(ImageId);
uuid_key!(NetworkId);
uuid_key!(SubnetPoolId);
uuid_key!(RouterId);
uuid_key!(FloatingIpId);
uuid_key!(SecurityGroupId);

fn utf8(b: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(b).map_err(|e| e.to_string())
}

macro_rules! name_key {
    ($t:ty) => {
        impl TableKey for $t {
            fn to_key_bytes(&self) -> Vec<u8> {
                self.as_str().as_bytes().to_vec()
            }
            fn from_key_bytes(b: &[u8]) -> Result<Self, String> {
                <$t>::new(utf8(b)?).map_err(|e| e.to_string())
            }
        }
    };
}
name_key!(CellName);
name_key!(HostName);

impl TableKey for Subject {
    fn to_key_bytes(&self) -> Vec<u8> {
        self.as_str().as_bytes().to_vec()
    }
    fn from_key_bytes(b: &[u8]) -> Result<Self, String> {
        Subject::parse(utf8(b)?).map_err(|e| e.to_string())
    }
}

/// An event addressed to a model whose subject does not name a valid key (counted in
/// `Views::decode_errors`, like an undecodable event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

/// A read model. See the module docs for the invariants an implementation keeps.
pub trait ReadModel: Default + Clone + Debug + Send + Sync + 'static {
    /// Stable name: the model's table in `projections.redb` and its name in
    /// `replay rebuild` differences.
    const NAME: &'static str;
    /// What a row is found by.
    type Key: TableKey;
    /// A stored row: usually [`Row<S>`]; a model spanning several subjects per key
    /// (instances: api and cell subject) keeps one sequence per subject in its row.
    type Row: Clone + PartialEq + Debug + Serialize + DeserializeOwned + Send + Sync + 'static;

    fn rows(&self) -> &Table<Self::Key, Self::Row>;
    fn rows_mut(&mut self) -> &mut Table<Self::Key, Self::Row>;

    /// Folds one decoded event of `commit`. Returns the key of the row it changed,
    /// `None` when the event is not this model's.
    fn apply(&mut self, commit: &Commit, event: &Event) -> Result<Option<Self::Key>, Invalid>;

    /// Merges a model folded from *other streams* into this one. The default lets
    /// the other side's rows win, right when every key lives in one stream only.
    fn merge(&mut self, other: Self) {
        let mut other = other;
        let rows = std::mem::take(other.rows_mut());
        self.rows_mut().extend(rows);
    }

    /// Recomputes the indexes derived from rows (after a load or merges).
    fn rebuild_indexes(&mut self) {}
}

/// Keys touched per model, so a flush persists only what changed.
#[derive(Debug, Default)]
pub struct Touched {
    keys: BTreeMap<&'static str, Box<dyn KeySet>>,
}

impl Touched {
    /// Records that `key` of `M` changed.
    pub fn insert<M: ReadModel>(&mut self, key: M::Key) {
        self.keys
            .entry(M::NAME)
            .or_insert_with(|| Box::new(BTreeSet::<M::Key>::new()))
            .as_any_mut()
            .downcast_mut::<BTreeSet<M::Key>>()
            .expect("one key type per model name")
            .insert(key);
    }

    /// Keys of `M` touched.
    pub fn keys<M: ReadModel>(&self) -> Option<&BTreeSet<M::Key>> {
        self.keys.get(M::NAME)?.as_any().downcast_ref()
    }

    /// Whether nothing was touched.
    pub fn is_empty(&self) -> bool {
        self.keys.values().all(|k| k.is_empty())
    }

    /// Adds everything `other` touched.
    pub fn extend(&mut self, other: Touched) {
        for (name, keys) in other.keys {
            match self.keys.get_mut(name) {
                Some(mine) => mine.extend_from(keys),
                None => {
                    self.keys.insert(name, keys);
                }
            }
        }
    }
}

/// A type-erased set of one model's keys.
trait KeySet: Debug + Send + Sync {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn is_empty(&self) -> bool;
    fn extend_from(&mut self, other: Box<dyn KeySet>);
}

impl<K: TableKey> KeySet for BTreeSet<K> {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn is_empty(&self) -> bool {
        BTreeSet::is_empty(self)
    }
    fn extend_from(&mut self, other: Box<dyn KeySet>) {
        if let Some(o) = other.as_any().downcast_ref::<BTreeSet<K>>() {
            self.extend(o.iter().cloned());
        }
    }
}

/// A stored row: encoded key and encoded row (`None`: the model removed the row, so the
/// store deletes it; otherwise a restart would load a row the model no longer has).
pub(crate) type Encoded = (Vec<u8>, Option<Vec<u8>>);

/// What `Views`, the store and `replay` do with a model without knowing its type.
pub(crate) trait AnyModel: Debug + Send + Sync {
    fn name(&self) -> &'static str;
    fn type_id_of(&self) -> TypeId;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
    fn clone_box(&self) -> Box<dyn AnyModel>;
    fn empty(&self) -> Box<dyn AnyModel>;
    fn apply(&mut self, c: &Commit, ev: &Event, touched: &mut Touched) -> Result<(), Invalid>;
    fn merge(&mut self, other: Box<dyn AnyModel>);
    fn rebuild_indexes(&mut self);
    fn copy_touched(&self, touched: &Touched) -> Box<dyn AnyModel>;
    fn encode_touched(&self, touched: &Touched) -> Result<Vec<Encoded>, String>;
    fn load_row(&mut self, key: &[u8], row: &[u8]) -> Result<(), String>;
    fn rows_eq(&self, other: &dyn AnyModel) -> bool;
    fn diff(&self, rebuilt: &dyn AnyModel, out: &mut Vec<String>);
}

impl<M: ReadModel> AnyModel for M {
    fn name(&self) -> &'static str {
        M::NAME
    }
    fn type_id_of(&self) -> TypeId {
        TypeId::of::<M>()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
    fn clone_box(&self) -> Box<dyn AnyModel> {
        Box::new(self.clone())
    }
    fn empty(&self) -> Box<dyn AnyModel> {
        Box::new(M::default())
    }
    fn apply(&mut self, c: &Commit, ev: &Event, touched: &mut Touched) -> Result<(), Invalid> {
        if let Some(k) = ReadModel::apply(self, c, ev)? {
            touched.insert::<M>(k);
        }
        Ok(())
    }
    fn merge(&mut self, other: Box<dyn AnyModel>) {
        if let Ok(o) = other.into_any().downcast::<M>() {
            ReadModel::merge(self, *o);
        }
    }
    fn rebuild_indexes(&mut self) {
        ReadModel::rebuild_indexes(self)
    }
    fn copy_touched(&self, touched: &Touched) -> Box<dyn AnyModel> {
        let mut copy = M::default();
        for k in touched.keys::<M>().into_iter().flatten() {
            if let Some(r) = self.rows().get(k) {
                copy.rows_mut().insert(k.clone(), r.clone());
            }
        }
        Box::new(copy)
    }
    fn encode_touched(&self, touched: &Touched) -> Result<Vec<Encoded>, String> {
        let mut out = Vec::new();
        for k in touched.keys::<M>().into_iter().flatten() {
            let bytes = match self.rows().get(k) {
                Some(r) => Some(postcard::to_stdvec(r).map_err(|e| e.to_string())?),
                None => None,
            };
            out.push((k.to_key_bytes(), bytes));
        }
        Ok(out)
    }
    fn load_row(&mut self, key: &[u8], row: &[u8]) -> Result<(), String> {
        let k = M::Key::from_key_bytes(key)?;
        let r: M::Row = postcard::from_bytes(row).map_err(|e| e.to_string())?;
        self.rows_mut().insert(k, r);
        Ok(())
    }
    fn rows_eq(&self, other: &dyn AnyModel) -> bool {
        other
            .as_any()
            .downcast_ref::<M>()
            .is_some_and(|o| o.rows() == self.rows())
    }
    fn diff(&self, rebuilt: &dyn AnyModel, out: &mut Vec<String>) {
        let name = M::NAME;
        let Some(rebuilt) = rebuilt.as_any().downcast_ref::<M>() else {
            out.push(format!("{name}: not the same model"));
            return;
        };
        for (k, row) in rebuilt.rows() {
            match self.rows().get(k) {
                None => out.push(format!("{name} {k}: missing from stored views")),
                Some(s) if s != row => out.push(format!("{name} {k}: stored row differs")),
                _ => {}
            }
        }
        for k in self.rows().keys() {
            if !rebuilt.rows().contains_key(k) {
                out.push(format!("{name} {k}: in stored views but not in the log"));
            }
        }
    }
}

impl Clone for Box<dyn AnyModel> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}
