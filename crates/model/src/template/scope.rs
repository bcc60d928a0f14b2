//! [`Scope`]: the variables templates see during a run, kept as JSON and
//! converted on first read, and the engine `Object`s that read them lazily.

use minijinja::value::{Enumerator, Object, ObjectExt, ObjectRepr, Value as MjValue};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// The variables templates see during one run. Values are kept as JSON and
/// turned into engine values only when a template reads them: a dotted path
/// is looked up in the JSON directly, and the engine's context converts a
/// top-level entry (`trigger`, `vars`, each `nodes.<key>`, the current loop…)
/// on first read, once; `now` is formatted only when a template reads it.
/// Cloning is cheap (the data is shared until one of the clones changes it).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub(super) data: Arc<ScopeData>,
    /// The context handed to templates, built on first use after a change.
    context: OnceLock<MjValue>,
}

#[derive(Debug, Clone, Default)]
pub(super) struct ScopeData {
    pub(super) entries: BTreeMap<&'static str, Arc<Lazy>>,
    pub(super) nodes: BTreeMap<String, Arc<Lazy>>,
    pub(super) loops: Vec<Arc<LoopEntry>>,
}

/// A JSON value and its engine form, converted on first use.
#[derive(Debug)]
pub(super) struct Lazy {
    pub(super) json: Json,
    pub(super) value: OnceLock<MjValue>,
}

impl Lazy {
    fn new(json: Json) -> Arc<Lazy> {
        Arc::new(Lazy {
            json,
            value: OnceLock::new(),
        })
    }

    /// The engine form (converted once, then shared).
    pub(super) fn value(&self) -> MjValue {
        self.value.get_or_init(|| engine_value(&self.json)).clone()
    }
}

/// One loop iteration: `loop.item`, `loop.index`.
#[derive(Debug)]
pub(super) struct LoopEntry {
    pub(super) item: Json,
    pub(super) index: usize,
    value: OnceLock<MjValue>,
}

impl LoopEntry {
    /// The engine form of `loop` (converted once, then shared).
    pub(super) fn value(&self) -> MjValue {
        self.value
            .get_or_init(|| {
                let mut m = BTreeMap::new();
                m.insert("item", engine_value(&self.item));
                m.insert("index", MjValue::from(self.index));
                MjValue::from(m)
            })
            .clone()
    }
}

/// A JSON value as the engine sees it.
pub(super) fn engine_value(json: &Json) -> MjValue {
    MjValue::from(minijinja::value::Serde(json))
}

impl Scope {
    /// An empty scope.
    pub fn new() -> Scope {
        Scope::default()
    }

    /// The data, for a change (the cached context is dropped first, so that
    /// it does not keep the data shared).
    fn change(&mut self) -> &mut ScopeData {
        self.context = OnceLock::new();
        Arc::make_mut(&mut self.data)
    }

    /// Sets a top-level variable (`trigger`, `vars`, `execution`, `secrets`).
    pub fn set(&mut self, name: &'static str, value: &Json) {
        self.set_owned(name, value.clone());
    }

    /// Sets a top-level variable, taking the value without a copy.
    pub fn set_owned(&mut self, name: &'static str, value: Json) {
        self.change().entries.insert(name, Lazy::new(value));
    }

    /// Sets `nodes.<key>`.
    pub fn set_node(&mut self, key: &str, value: &Json) {
        self.change()
            .nodes
            .insert(key.to_string(), Lazy::new(value.clone()));
    }

    /// Enters a loop iteration: `loop.item`, `loop.index`.
    pub fn push_loop(&mut self, item: &Json, index: usize) {
        self.push_loop_owned(item.clone(), index);
    }

    /// Enters a loop iteration, taking the item without a copy.
    pub fn push_loop_owned(&mut self, item: Json, index: usize) {
        self.change().loops.push(Arc::new(LoopEntry {
            item,
            index,
            value: OnceLock::new(),
        }));
    }

    /// Leaves every loop iteration.
    pub fn clear_loops(&mut self) {
        if !self.data.loops.is_empty() {
            self.change().loops.clear();
        }
    }

    pub(super) fn context(&self) -> MjValue {
        self.context
            .get_or_init(|| {
                MjValue::from_object(ScopeObject {
                    data: self.data.clone(),
                })
            })
            .clone()
    }
}

/// The scope as the engine's context; entries convert when read.
#[derive(Debug)]
struct ScopeObject {
    data: Arc<ScopeData>,
}

impl Object for ScopeObject {
    fn get_value(self: &Arc<Self>, key: &MjValue) -> Option<MjValue> {
        let data = &self.data;
        match key.as_str()? {
            "nodes" => Some(MjValue::from_object(NodesObject { data: data.clone() })),
            "loop" => data.loops.last().map(|l| l.value()),
            "now" => Some(MjValue::from(crate::time::now_rfc3339())),
            other => data.entries.get(other).map(|e| e.value()),
        }
    }
}

/// `nodes` as the engine sees it: a mapping (like a `BTreeMap` of node
/// results) whose members convert when read.
#[derive(Debug)]
struct NodesObject {
    data: Arc<ScopeData>,
}

impl Object for NodesObject {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &MjValue) -> Option<MjValue> {
        self.data.nodes.get(key.as_str()?).map(|n| n.value())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        self.mapped_rev_key_value_enumerator(|this| {
            Box::new(
                this.data
                    .nodes
                    .iter()
                    .map(|(k, v)| (MjValue::from(k.as_str()), v.value())),
            )
        })
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.data.nodes.len())
    }
}
