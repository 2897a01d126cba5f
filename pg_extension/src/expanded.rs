//! Aggregate states of an SQL type (not `internal`), held as PostgreSQL expanded objects.
//!
//! Citus splits a custom aggregate into partial aggregates on the workers and a combine on the
//! coordinator only when the state has an SQL type, which it ships through the type's text
//! form. Held as a plain varlena, such a state would be decoded and encoded again on every row.
//! As an expanded object, the transition function changes the Rust value in place and returns
//! the same read-write datum, which the executor keeps without a copy (nodeAgg adopts a
//! read-write object whose context is a child of the aggregate context). Wherever a datum must
//! be flat (a tuple, a parallel worker's output, the text form) it is the value's binary form.

use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::{c_void, CStr};

/// A Rust value usable as an expanded aggregate state.
pub trait FlatState: Clone + 'static {
    /// The SQL type's name, for messages.
    const NAME: &'static str;
    /// The flat form (what is stored, copied and shipped), without the varlena header.
    fn to_flat(&self) -> Vec<u8>;
    fn from_flat(bytes: &[u8]) -> Result<Self, String>;
    /// The type's method table; its address also tells our objects from any other.
    fn methods() -> &'static pg_sys::ExpandedObjectMethods;
}

/// A `&'static ExpandedObjectMethods` for a type implementing [`FlatState`].
macro_rules! expanded_methods {
    ($t:ty) => {{
        static METHODS: ::pgrx::pg_sys::ExpandedObjectMethods = ::pgrx::pg_sys::ExpandedObjectMethods {
            get_flat_size: Some($crate::expanded::get_flat_size::<$t>),
            flatten_into: Some($crate::expanded::flatten_into::<$t>),
        };
        &METHODS
    }};
}
pub(crate) use expanded_methods;

/// The object, on the Rust heap; the header must come first. Its memory context (what
/// nodeAgg reparents or deletes) holds nothing: deleting or resetting it runs the callback,
/// which frees the object. An empty context counts no bytes against work_mem, as the
/// `internal` states' Rust values did not (a hash aggregate spills no sooner than before).
#[repr(C)]
struct Expanded<T> {
    hdr: pg_sys::ExpandedObjectHeader,
    callback: pg_sys::MemoryContextCallback,
    value: T,
    /// The flat bytes once computed (get_flat_size then flatten_into); dropped by any change.
    flat: Option<Vec<u8>>,
}

const VARHDRSZ: usize = 4;

unsafe fn flat_bytes<T: FlatState>(obj: *mut Expanded<T>) -> &'static [u8] {
    unsafe {
        let obj = &mut *obj;
        if obj.flat.is_none() {
            obj.flat = Some(obj.value.to_flat());
        }
        obj.flat.as_deref().expect("set above")
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn get_flat_size<T: FlatState>(eoh: *mut pg_sys::ExpandedObjectHeader) -> usize {
    unsafe { VARHDRSZ + flat_bytes(eoh.cast::<Expanded<T>>()).len() }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn flatten_into<T: FlatState>(
    eoh: *mut pg_sys::ExpandedObjectHeader,
    result: *mut c_void,
    allocated_size: usize,
) {
    unsafe {
        let bytes = flat_bytes(eoh.cast::<Expanded<T>>());
        assert_eq!(allocated_size, VARHDRSZ + bytes.len(), "{}: flat size changed", T::NAME);
        pgrx::varlena::set_varsize_4b(result.cast(), allocated_size as i32);
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), result.cast::<u8>().add(VARHDRSZ), bytes.len());
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn drop_object<T: FlatState>(arg: *mut c_void) {
    drop(unsafe { Box::from_raw(arg.cast::<Expanded<T>>()) })
}

/// The aggregate's memory context; outside an aggregate, an error naming `what`.
unsafe fn agg_context(fcinfo: pg_sys::FunctionCallInfo, what: &str) -> pg_sys::MemoryContext {
    let mut ctx: pg_sys::MemoryContext = std::ptr::null_mut();
    if fcinfo.is_null() || unsafe { pg_sys::AggCheckCallContext(fcinfo, &mut ctx) } == 0 {
        error!("{what} can only be called as part of an aggregate");
    }
    ctx
}

/// A new read-write expanded object holding `value`, its context a child of `parent`.
unsafe fn new_object<T: FlatState>(parent: pg_sys::MemoryContext, value: T) -> pg_sys::Datum {
    unsafe {
        // A slab context allocates no block until asked for a chunk, and nothing asks: its
        // header (one malloc) is all it costs. An allocation set would take 1 kB per group.
        let ctx = pg_sys::SlabContextCreate(parent, c"tapeflow aggregate state".as_ptr(), 256, 8);
        let obj = Box::into_raw(Box::new(Expanded {
            hdr: std::mem::zeroed(),
            callback: pg_sys::MemoryContextCallback {
                func: Some(drop_object::<T>),
                arg: std::ptr::null_mut(),
                next: std::ptr::null_mut(),
            },
            value,
            flat: None,
        }));
        pg_sys::EOH_init_header(std::ptr::addr_of_mut!((*obj).hdr), T::methods(), ctx);
        (*obj).callback.arg = obj.cast();
        pg_sys::MemoryContextRegisterResetCallback(ctx, std::ptr::addr_of_mut!((*obj).callback));
        pg_sys::Datum::from((*obj).hdr.eoh_rw_ptr.as_mut_ptr())
    }
}

/// Our expanded object behind `datum` and whether the pointer is read-write; None for a flat
/// value or another kind of expanded object. (VARATT_IS_EXTERNAL_EXPANDED by hand.)
unsafe fn ours<T: FlatState>(datum: pg_sys::Datum) -> Option<(*mut Expanded<T>, bool)> {
    unsafe {
        let p = datum.cast_mut_ptr::<pg_sys::varlena>();
        if !pgrx::varlena::varatt_is_1b_e(p) {
            return None;
        }
        let rw = match pgrx::varlena::vartag_1b_e(p) as pg_sys::vartag_external::Type {
            pg_sys::vartag_external::VARTAG_EXPANDED_RW => true,
            pg_sys::vartag_external::VARTAG_EXPANDED_RO => false,
            _ => return None,
        };
        // varatt_expanded follows the two header bytes, unaligned.
        let eoh = p.cast::<u8>().add(2).cast::<*mut pg_sys::ExpandedObjectHeader>().read_unaligned();
        if !std::ptr::eq((*eoh).eoh_methods, T::methods()) {
            return None;
        }
        Some((eoh.cast::<Expanded<T>>(), rw))
    }
}

/// The bytes of a flat datum of the state type (detoasted if need be), without the header.
unsafe fn stored_bytes<'a>(datum: pg_sys::Datum) -> &'a [u8] {
    unsafe { pgrx::varlena::varlena_to_byte_slice(pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr())) }
}

/// Decodes a flat (or foreign) datum of the state type.
unsafe fn decode<T: FlatState>(datum: pg_sys::Datum) -> T {
    unsafe { T::from_flat(stored_bytes(datum)).unwrap_or_else(|e| error!("invalid {} value: {e}", T::NAME)) }
}

/// The state `state` (not NULL) made changeable by a transition or combine function `what`:
/// itself when it is a read-write object of ours (changed in place, and the same datum is
/// returned), else a new object holding its decoded value. Returns the datum to return.
///
/// # Safety
/// `state` must be a non-NULL datum of the state type of `T`, `fcinfo` the call's.
pub unsafe fn for_update<'a, T: FlatState>(
    fcinfo: pg_sys::FunctionCallInfo,
    state: pg_sys::Datum,
    what: &str,
) -> (pg_sys::Datum, &'a mut T) {
    unsafe {
        // Only an aggregate holds a read-write pointer to one of our objects: they are made
        // in aggregate contexts, and what a final function or a cast returns is flat.
        let (datum, obj) = match ours::<T>(state) {
            Some((obj, true)) => (state, obj),
            _ => {
                let d = new_object(agg_context(fcinfo, what), owned::<T>(state));
                (d, ours::<T>(d).expect("just made").0)
            }
        };
        (*obj).flat = None;
        (datum, &mut (*obj).value)
    }
}

/// A new state holding `value`, for a transition or combine function `what`.
///
/// # Safety
/// `fcinfo` must be the call's.
pub unsafe fn create<T: FlatState>(fcinfo: pg_sys::FunctionCallInfo, value: T, what: &str) -> pg_sys::Datum {
    unsafe { new_object(agg_context(fcinfo, what), value) }
}

/// Runs `f` on the value of a state datum (not NULL), expanded or flat, without changing it.
///
/// # Safety
/// `state` must be a datum of the state type of `T`.
pub unsafe fn read<T: FlatState, R>(state: pg_sys::Datum, f: impl FnOnce(&T) -> R) -> R {
    unsafe {
        match ours::<T>(state) {
            Some((obj, _)) => f(&(*obj).value),
            None => f(&decode::<T>(state)),
        }
    }
}

/// The value of a state datum (not NULL), as a value of its own.
///
/// # Safety
/// As for [`read`].
pub unsafe fn owned<T: FlatState>(state: pg_sys::Datum) -> T {
    unsafe {
        match ours::<T>(state) {
            Some((obj, _)) => T::clone(&(*obj).value),
            None => decode::<T>(state),
        }
    }
}

/// The text form: the flat bytes in lowercase hex (a palloc'd C string).
///
/// # Safety
/// As for [`read`].
pub unsafe fn output<T: FlatState>(state: pg_sys::Datum) -> pg_sys::Datum {
    unsafe {
        let bytes = match ours::<T>(state) {
            Some((obj, _)) => flat_bytes(obj),
            None => stored_bytes(state),
        };
        let text = hex::encode(bytes);
        let out = pg_sys::palloc(text.len() + 1).cast::<u8>();
        std::ptr::copy_nonoverlapping(text.as_ptr(), out, text.len());
        *out.add(text.len()) = 0;
        pg_sys::Datum::from(out)
    }
}

/// Reads the text form (hex of the flat bytes), checking that it decodes; a flat datum.
pub fn input<T: FlatState>(text: &CStr) -> pg_sys::Datum {
    let s = text.to_bytes();
    let bad = |why: &str| -> ! {
        let shown: String = String::from_utf8_lossy(s).chars().take(40).collect();
        error!("invalid input for {}: {why} (\"{shown}\")", T::NAME)
    };
    let bytes = hex::decode(s).unwrap_or_else(|e| bad(&e.to_string()));
    if let Err(e) = T::from_flat(&bytes) {
        bad(&e);
    }
    pg_sys::Datum::from(pgrx::varlena::rust_byte_slice_to_bytea(&bytes).into_pg())
}
