//! What the group calls share: who may act on a group (whoever may act on
//! every member), and groups as messages.

use tonic::{Request, Status};

use super::auth::{authorize, Caller};
use super::proto;
use crate::engine::groups::Group;
use crate::engine::tokens::Scope;
use crate::engine::Engine;

/// The caller, if it holds `scope` for every member of `group` (a token
/// limited to some containers acts on a group only if all its members are
/// among them).
pub fn authorize_group<T>(request: &Request<T>, engine: &Engine, group: &str, scope: Scope) -> Result<Caller, Status> {
    let members = engine.group(group).map_err(super::status::from_engine)?.members;
    let mut caller = None;
    for member in &members {
        caller = Some(authorize(request, scope, Some(&member.id))?);
    }
    match caller {
        Some(caller) => Ok(caller),
        None => authorize(request, scope, None),
    }
}

pub fn group(group: &Group) -> proto::Group {
    proto::Group { name: group.name.clone(), members: group.members.iter().map(|m| m.id.clone()).collect() }
}
