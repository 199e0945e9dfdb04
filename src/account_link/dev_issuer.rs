//! TODO(helper): being written.
