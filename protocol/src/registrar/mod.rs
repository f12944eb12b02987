//! Registrar rules of RFC 3261 §10.3, sans-IO.
//!
//! The registrar is a pure function: [`apply_register`] takes the bindings currently stored for
//! an address-of-record, the REGISTER reduced to plain data ([`RegisterRequest`]), the
//! [`RegistrarPolicy`] and the wall-clock time `now` supplied by the caller, and returns either
//! the new full binding set ([`RegisterOutcome`]) or a [`RegisterError`] that maps to a SIP
//! error response. Nothing is changed on error: the caller simply does not store anything.
//!
//! Bindings carry an **absolute** expiry as [`std::time::SystemTime`] (not `Instant`) because
//! they are shared through a store with other nodes; the registrar never reads the clock.
//!
//! # Layout
//! - [`aor`]: the canonical address-of-record key ([`Aor`]).
//! - [`contact_uri`]: Contact URI equivalence (RFC 3261 §19.1.4) used as binding identity.
//! - [`policy`]: expiry bounds and contact limit ([`RegistrarPolicy`]).
//! - [`request`]: the REGISTER as plain data ([`RegisterRequest`], [`ContactInput`], [`Source`]).
//! - [`binding`]: a stored binding ([`Binding`]) and the 200 OK `Contact` values.
//! - [`apply`]: the §10.3 steps 6–8 algorithm ([`apply_register`]).
//! - [`repeat`]: recognising a copy of a REGISTER already applied ([`is_applied_repeat`]).
//! - [`targets`]: ordering bindings by q-value for forking ([`targets_in_order`]).
//! - [`error`]: [`RegisterError`] with its status code and reason phrase.

pub mod aor;
pub mod apply;
pub mod binding;
pub mod contact_uri;
pub mod error;
pub mod policy;
pub mod repeat;
pub mod request;
pub mod targets;

pub use aor::{Aor, AorError};
pub use apply::{RegisterOutcome, apply_register};
pub use binding::{Binding, contact_header_values, remaining};
pub use contact_uri::contact_uris_equivalent;
pub use error::RegisterError;
pub use policy::{PolicyError, RegistrarPolicy};
pub use repeat::is_applied_repeat;
pub use request::{ContactInput, RegisterRequest, RequestContacts, Source};
pub use targets::targets_in_order;
