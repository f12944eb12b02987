//! Header names and typed header values. Values borrow from the message buffer and are
//! parsed only when asked for (see `Message` accessors in [`crate::message`]).

mod auth;
mod contact;
mod cseq;
pub(crate) mod name;
mod name_addr;
pub(crate) mod params;
pub(crate) mod scan;
mod via;

pub use auth::{AuthValue, Challenge, Credentials};
pub use contact::{Contact, Contacts};
pub use cseq::CSeq;
pub use name::HeaderName;
pub use name_addr::NameAddr;
pub use params::{ParamIter, Params};
pub use scan::unquote;
pub use via::{SentBy, Via};
