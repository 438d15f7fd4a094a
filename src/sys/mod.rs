//! Small wrappers over Linux interfaces shared by several layers.

pub mod bus;
pub mod meminfo;
pub mod memory;
pub mod mountinfo;
pub mod proc_cgroup;
