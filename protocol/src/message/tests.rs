//! Unit tests for message parsing, accessors, editing and building.

use super::*;
