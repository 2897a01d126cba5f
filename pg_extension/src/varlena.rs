//! Storage of the extension's summary types as compact varlenas.
//!
//! pgrx's default stores `PostgresType`s as CBOR with field names. Our summaries are stored
//! by the million (one per symbol-minute), so they use the analytics crate's own binary form,
//! which starts with a version byte; the text form is JSON for people and `psql`.

/// Implements the datum conversions for a newtype over an analytics value that has
/// `to_bytes`/`from_bytes`, plus JSON text input/output.
macro_rules! binary_varlena_type {
    ($t:ident, $inner:ty, $sql_name:literal) => {
        impl ::pgrx::datum::IntoDatum for $t {
            fn into_datum(self) -> Option<::pgrx::pg_sys::Datum> {
                let bytes = self.0.to_bytes();
                let v = ::pgrx::varlena::rust_byte_slice_to_bytea(&bytes);
                Some(::pgrx::pg_sys::Datum::from(v.into_pg()))
            }
            fn type_oid() -> ::pgrx::pg_sys::Oid {
                static CACHE: $crate::varlena::TypeOid = $crate::varlena::TypeOid::new($sql_name);
                CACHE.get()
            }
        }

        unsafe impl ::pgrx::callconv::BoxRet for $t {
            unsafe fn box_into<'fcx>(
                self,
                fcinfo: &mut ::pgrx::callconv::FcInfo<'fcx>,
            ) -> ::pgrx::datum::Datum<'fcx> {
                match ::pgrx::datum::IntoDatum::into_datum(self) {
                    None => fcinfo.return_null(),
                    Some(datum) => unsafe { fcinfo.return_raw_datum(datum) },
                }
            }
        }

        impl ::pgrx::datum::FromDatum for $t {
            unsafe fn from_polymorphic_datum(
                datum: ::pgrx::pg_sys::Datum,
                is_null: bool,
                _typoid: ::pgrx::pg_sys::Oid,
            ) -> Option<Self> {
                if is_null || datum.is_null() {
                    return None;
                }
                unsafe {
                    let v = ::pgrx::pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
                    let bytes = ::pgrx::varlena::varlena_to_byte_slice(v);
                    match <$inner>::from_bytes(bytes) {
                        Ok(x) => Some($t(x)),
                        Err(e) => ::pgrx::error!("invalid {} value: {}", $sql_name, e),
                    }
                }
            }
        }

        unsafe impl ::pgrx::datum::UnboxDatum for $t {
            type As<'dat>
                = Self
            where
                Self: 'dat;
            unsafe fn unbox<'dat>(datum: ::pgrx::datum::Datum<'dat>) -> Self::As<'dat>
            where
                Self: 'dat,
            {
                unsafe {
                    <Self as ::pgrx::datum::FromDatum>::from_datum(
                        ::core::mem::transmute::<::pgrx::datum::Datum<'_>, ::pgrx::pg_sys::Datum>(datum),
                        false,
                    )
                    .unwrap()
                }
            }
        }

        unsafe impl<'fcx> ::pgrx::callconv::ArgAbi<'fcx> for $t
        where
            Self: 'fcx,
        {
            unsafe fn unbox_arg_unchecked(arg: ::pgrx::callconv::Arg<'_, 'fcx>) -> Self {
                let index = arg.index();
                unsafe {
                    arg.unbox_arg_using_from_datum()
                        .unwrap_or_else(|| panic!("argument {index} must not be null"))
                }
            }
        }

        impl ::pgrx::inoutfuncs::InOutFuncs for $t {
            fn input(input: &::core::ffi::CStr) -> Self {
                let text =
                    input.to_str().unwrap_or_else(|_| ::pgrx::error!("{} input is not UTF-8", $sql_name));
                match ::serde_json::from_str::<$inner>(text) {
                    Ok(x) => $t(x),
                    Err(e) => ::pgrx::error!("invalid {} input {:?}: {}", $sql_name, text, e),
                }
            }
            fn output(&self, buffer: &mut ::pgrx::stringinfo::StringInfo) {
                buffer.push_str(&::serde_json::to_string(&self.0).expect("summaries serialize to JSON"));
            }
        }
    };
}

pub(crate) use binary_varlena_type;

use pgrx::pg_sys;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Bumped by any change to `pg_type` (see [`register_invalidation`]), which makes every
/// [`TypeOid`] look its name up again: a dropped and recreated extension gets new OIDs.
static TYPE_GENERATION: AtomicU32 = AtomicU32::new(1);

/// A type's OID, looked up by name once per backend. SPI checks a value's type by this OID
/// for every value read, and a lookup by name runs the SQL parser: done per value it took a
/// quarter of a backtest's time.
pub(crate) struct TypeOid {
    /// Schema-qualified, so callers (the scheduler, other schemas) need not have tapeflow on
    /// their search_path.
    name: &'static str,
    /// Generation in the high half, OID in the low half; generation 0 is never current.
    cached: AtomicU64,
}

impl TypeOid {
    pub(crate) const fn new(name: &'static str) -> TypeOid {
        TypeOid { name, cached: AtomicU64::new(0) }
    }

    pub(crate) fn get(&self) -> pg_sys::Oid {
        let generation = TYPE_GENERATION.load(Ordering::Relaxed);
        let cached = self.cached.load(Ordering::Relaxed);
        if (cached >> 32) as u32 == generation {
            return pg_sys::Oid::from(cached as u32);
        }
        let oid = pgrx::wrappers::regtypein(self.name);
        self.cached.store((u64::from(generation) << 32) | u64::from(oid.to_u32()), Ordering::Relaxed);
        oid
    }
}

unsafe extern "C-unwind" fn type_changed(_: pg_sys::Datum, _: std::ffi::c_int, _: u32) {
    TYPE_GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// Registers the invalidation of cached type OIDs; called once per process from `_PG_init`.
pub(crate) fn register_invalidation() {
    // SAFETY: registering a syscache callback is allowed at any time in a backend or the
    // postmaster; the callback only bumps an atomic counter.
    unsafe {
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::TYPEOID as std::ffi::c_int,
            Some(type_changed),
            pg_sys::Datum::from(0),
        );
    }
}
