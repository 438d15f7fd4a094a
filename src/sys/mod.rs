//! Small wrappers over Linux interfaces shared by several layers.

pub mod mountinfo;
