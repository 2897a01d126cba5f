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
                // Schema-qualified: callers (the scheduler, other schemas) need not have tapeflow on their search_path.
                ::pgrx::wrappers::regtypein($sql_name)
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
