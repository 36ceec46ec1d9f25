//! Typed extension slots: where a feature module keeps its own state, per session or for the
//! whole server, without the core knowing the state's type (docs/ARCHITECTURE.md, "Hooks").
//!
//! A slot is keyed by its Rust type, so each module defines a type of its own (a newtype is
//! enough) and no two modules can trample each other's state.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Shared slots, reachable from any task: a session's handle carries one (carbons on or off,
/// roster requested …), and so does the server (the blocklist cache, services).
#[derive(Default)]
pub struct Extensions {
    slots: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl Extensions {
    /// The value in `T`'s slot, if any.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let slots = self.slots.lock().ok()?;
        slots
            .get(&TypeId::of::<T>())
            .cloned()
            .and_then(|value| value.downcast::<T>().ok())
    }

    /// The value in `T`'s slot, created with `T::default()` on first use.
    pub fn get_or_default<T: Any + Send + Sync + Default>(&self) -> Arc<T> {
        let Ok(mut slots) = self.slots.lock() else {
            // A poisoned lock means a panic elsewhere; a fresh value is the safe answer.
            return Arc::new(T::default());
        };
        let value = slots
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(T::default()))
            .clone();
        value
            .downcast::<T>()
            .unwrap_or_else(|_| Arc::new(T::default()))
    }

    /// Put `value` in `T`'s slot, replacing what was there.
    pub fn insert<T: Any + Send + Sync>(&self, value: T) {
        self.insert_arc(Arc::new(value));
    }

    /// Put a value that is already shared in `T`'s slot.
    pub fn insert_arc<T: Any + Send + Sync>(&self, value: Arc<T>) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.insert(TypeId::of::<T>(), value);
        }
    }
}

/// Slots owned by one connection's task: no lock, mutable access. Stream-level modules (client
/// state indication) keep here what only the connection's own writer touches.
#[derive(Default)]
pub struct LocalExtensions {
    slots: HashMap<TypeId, Box<dyn Any + Send>>,
}

impl LocalExtensions {
    /// `T`'s slot, created with `T::default()` on first use.
    pub fn get_mut<T: Any + Send + Default>(&mut self) -> &mut T {
        let slot = self
            .slots
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Box::new(T::default()));
        if !slot.is::<T>() {
            *slot = Box::new(T::default());
        }
        slot.downcast_mut::<T>()
            .expect("slot holds T: checked above")
    }

    /// `T`'s slot if it has been used.
    pub fn existing<T: Any + Send>(&mut self) -> Option<&mut T> {
        self.slots
            .get_mut(&TypeId::of::<T>())
            .and_then(|slot| slot.downcast_mut::<T>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Default)]
    struct Flag(AtomicBool);
    #[derive(Default)]
    struct Other(AtomicBool);

    #[test]
    fn each_type_has_its_own_slot() {
        let extensions = Extensions::default();
        assert!(extensions.get::<Flag>().is_none());
        extensions
            .get_or_default::<Flag>()
            .0
            .store(true, Ordering::SeqCst);
        assert!(extensions.get::<Flag>().unwrap().0.load(Ordering::SeqCst));
        assert!(!extensions
            .get_or_default::<Other>()
            .0
            .load(Ordering::SeqCst));
        extensions.insert(Flag(AtomicBool::new(false)));
        assert!(!extensions.get::<Flag>().unwrap().0.load(Ordering::SeqCst));
    }

    #[test]
    fn local_slots_are_mutable_in_place() {
        let mut local = LocalExtensions::default();
        assert!(local.existing::<Vec<u8>>().is_none());
        local.get_mut::<Vec<u8>>().push(1);
        local.get_mut::<Vec<u8>>().push(2);
        assert_eq!(local.existing::<Vec<u8>>().unwrap(), &vec![1, 2]);
    }
}
