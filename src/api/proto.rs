//! Generated code of `proto/rollpoint/v1/rollpoint.proto` (package
//! `rollpoint.v1`) and its encoded descriptor set, for server reflection.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("rollpoint.v1");

/// Encoded `FileDescriptorSet` of the rollpoint protos.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("rollpoint_descriptor");
