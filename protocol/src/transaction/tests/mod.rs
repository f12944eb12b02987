//! Simulated-link tests of the transaction machines: exact retransmission schedules and
//! message exchanges on a virtual clock, with scripted packet loss.

mod client_invite;
mod client_non_invite;
mod harness;
mod random_ops;
mod server_invite;
mod server_non_invite;
