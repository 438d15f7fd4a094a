//! `rollpoint.v1.ContainerService`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::auth::authorize;
use super::groups::authorize_group;
use super::proto::container_service_server::ContainerService;
use super::proto::*;
use super::{admission_deadline, blocking, changing, convert};
use crate::discovery::Source;
use crate::engine::clone::CloneRequest;
use crate::engine::tokens::Scope;
use crate::engine::{ContainerUpdate, Engine, RegisterRequest};

pub struct Containers {
    pub engine: Arc<Engine>,
}

#[tonic::async_trait]
impl ContainerService for Containers {
    async fn register_container(
        &self,
        request: Request<RegisterContainerRequest>,
    ) -> Result<Response<RegisterContainerResponse>, Status> {
        let caller = authorize(&request, Scope::Admin, None)?;
        let deadline = admission_deadline(request.metadata());
        let request = request.into_inner();
        let lifecycle = convert::lifecycle_from_proto(request.lifecycle).map_err(super::status::from_engine)?;
        let hooks = convert::hooks_from_proto(request.hooks).map_err(super::status::from_engine)?;
        let id = request.id.clone();
        let record = changing(&self.engine, deadline, Some(&id), move |engine| {
            engine.register_container(RegisterRequest {
                id: request.id,
                cgroup: request.cgroup,
                subvolume: request.subvolume,
                lifecycle,
                labels: request.labels.into_iter().collect(),
                hooks,
                actor: caller.actor(),
                discovered: None,
            })
        })
        .await?;
        Ok(Response::new(RegisterContainerResponse {
            container: Some(convert::container(&record, 0, self.engine.policies(&record))),
        }))
    }

    async fn clone_container(
        &self,
        request: Request<CloneContainerRequest>,
    ) -> Result<Response<CloneContainerResponse>, Status> {
        authorize(&request, Scope::Read, Some(&request.get_ref().container))?;
        let caller = authorize(&request, Scope::Admin, None)?;
        let deadline = admission_deadline(request.metadata());
        let request = request.into_inner();
        let id = request.id.clone();
        let record = changing(&self.engine, deadline, Some(&id), move |engine| {
            engine.clone_snapshot(CloneRequest {
                container: request.container,
                snapshot: request.snapshot,
                id: request.id,
                cgroup: request.cgroup,
                subvolume: request.subvolume,
                actor: caller.actor(),
            })
        })
        .await?;
        Ok(Response::new(CloneContainerResponse {
            container: Some(convert::container(&record, 0, self.engine.policies(&record))),
        }))
    }

    async fn update_container(
        &self,
        request: Request<UpdateContainerRequest>,
    ) -> Result<Response<UpdateContainerResponse>, Status> {
        let actor = authorize(&request, Scope::Admin, Some(&request.get_ref().id))?.actor();
        let deadline = admission_deadline(request.metadata());
        let request = request.into_inner();
        let hooks = request.hooks.map(|hooks| convert::hooks_from_proto(Some(hooks)));
        let update = ContainerUpdate {
            hooks: hooks.transpose().map_err(super::status::from_engine)?,
            retention: request.retention.map(convert::policy_from_proto),
            pre_restore_retention: request.pre_restore_retention.map(convert::policy_from_proto),
            default_retention: request.default_retention,
        };
        let id = request.id.clone();
        let container = changing(&self.engine, deadline, Some(&id), move |engine| {
            let record = engine.update_container(&request.id, update, &actor)?;
            Ok(convert::container(&record, engine.snapshot_count(&record.id)?, engine.policies(&record)))
        })
        .await?;
        Ok(Response::new(UpdateContainerResponse { container: Some(container) }))
    }

    async fn get_container(
        &self,
        request: Request<GetContainerRequest>,
    ) -> Result<Response<GetContainerResponse>, Status> {
        authorize(&request, Scope::Read, Some(&request.get_ref().id))?;
        let id = request.into_inner().id;
        let container = blocking(&self.engine, move |engine| {
            let record = engine.container(&id)?;
            Ok(convert::container(&record, engine.snapshot_count(&id)?, engine.policies(&record)))
        })
        .await?;
        Ok(Response::new(GetContainerResponse { container: Some(container) }))
    }

    async fn list_containers(
        &self,
        request: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        authorize(&request, Scope::Read, None)?;
        let request = request.into_inner();
        let response = blocking(&self.engine, move |engine| {
            let page = engine.list_containers(request.page_size, &request.page_token)?;
            let containers = page
                .items
                .iter()
                .map(|record| {
                    Ok(convert::container(record, engine.snapshot_count(&record.id)?, engine.policies(record)))
                })
                .collect::<Result<_, crate::engine::EngineError>>()?;
            Ok(ListContainersResponse { containers, next_page_token: page.next_page_token })
        })
        .await?;
        Ok(Response::new(response))
    }

    async fn unregister_container(
        &self,
        request: Request<UnregisterContainerRequest>,
    ) -> Result<Response<UnregisterContainerResponse>, Status> {
        let actor = authorize(&request, Scope::Admin, Some(&request.get_ref().id))?.actor();
        let deadline = admission_deadline(request.metadata());
        let request = request.into_inner();
        let id = request.id.clone();
        let deleted = changing(&self.engine, deadline, Some(&id), move |engine| {
            engine.unregister_container(&request.id, request.delete_snapshots, request.keep_snapshots, &actor)
        })
        .await?;
        Ok(Response::new(UnregisterContainerResponse { snapshots_deleted: deleted }))
    }

    async fn discover_containers(
        &self,
        request: Request<DiscoverContainersRequest>,
    ) -> Result<Response<DiscoverContainersResponse>, Status> {
        // It shows the host's processes and paths, and may register: admin.
        let caller = authorize(&request, Scope::Admin, None)?;
        let deadline = admission_deadline(request.metadata());
        let request = request.into_inner();
        let mut config = self.engine.discovery_config().clone();
        if !request.sources.is_empty() {
            config.sources = request
                .sources
                .iter()
                .map(|name| {
                    Source::parse(name).ok_or_else(|| {
                        Status::invalid_argument(format!("sources: {name:?} is not a manager (machined, podman)"))
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        let scan = crate::discovery::scan(&config).await;
        let unavailable = scan
            .unavailable
            .iter()
            .map(|(source, reason)| UnavailableSource { source: source.as_str().to_owned(), reason: reason.clone() })
            .collect();
        let found = scan.found;
        let containers = if request.register {
            changing(&self.engine, deadline, None, move |engine| {
                let candidates = engine.assess(found)?;
                let registrations = engine.register_found(candidates.clone(), &caller.actor());
                Ok(candidates
                    .iter()
                    .map(|candidate| {
                        let done = registrations.iter().find(|r| r.candidate == *candidate).map(|r| &r.outcome);
                        convert::discovered(candidate, done)
                    })
                    .collect())
            })
            .await?
        } else {
            blocking(&self.engine, move |engine| {
                Ok(engine.assess(found)?.iter().map(|candidate| convert::discovered(candidate, None)).collect())
            })
            .await?
        };
        Ok(Response::new(DiscoverContainersResponse { containers, unavailable }))
    }

    async fn set_group(&self, request: Request<SetGroupRequest>) -> Result<Response<SetGroupResponse>, Status> {
        let actor = authorize(&request, Scope::Admin, None)?.actor();
        let deadline = admission_deadline(request.metadata());
        let request = request.into_inner();
        let group = changing(&self.engine, deadline, None, move |engine| {
            engine.set_group(&request.name, &request.members, &actor)
        })
        .await?;
        Ok(Response::new(SetGroupResponse { group: Some(super::groups::group(&group)) }))
    }

    async fn get_group(&self, request: Request<GetGroupRequest>) -> Result<Response<GetGroupResponse>, Status> {
        authorize_group(&request, &self.engine, &request.get_ref().name, Scope::Read)?;
        let name = request.into_inner().name;
        let group = blocking(&self.engine, move |engine| engine.group(&name)).await?;
        Ok(Response::new(GetGroupResponse { group: Some(super::groups::group(&group)) }))
    }

    async fn list_groups(&self, request: Request<ListGroupsRequest>) -> Result<Response<ListGroupsResponse>, Status> {
        authorize(&request, Scope::Read, None)?;
        let groups = blocking(&self.engine, move |engine| engine.groups()).await?;
        Ok(Response::new(ListGroupsResponse { groups: groups.iter().map(super::groups::group).collect() }))
    }

    async fn delete_group(
        &self,
        request: Request<DeleteGroupRequest>,
    ) -> Result<Response<DeleteGroupResponse>, Status> {
        let actor = authorize(&request, Scope::Admin, None)?.actor();
        let deadline = admission_deadline(request.metadata());
        let name = request.into_inner().name;
        changing(&self.engine, deadline, None, move |engine| engine.delete_group(&name, &actor)).await?;
        Ok(Response::new(DeleteGroupResponse {}))
    }
}
