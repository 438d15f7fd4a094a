//! `rollpoint.v1.TokenService`: bearer tokens for the TCP listener.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::auth::authorize_token_management;
use super::convert;
use super::proto::token_service_server::TokenService;
use super::proto::*;
use super::status::from_engine;
use crate::engine::tokens::TokenBook;
use crate::engine::views::TokenRecord;

pub struct Tokens {
    pub book: Arc<TokenBook>,
}

fn token(record: &TokenRecord) -> Token {
    Token {
        name: record.name.clone(),
        scopes: record.scopes.clone(),
        containers: record.containers.clone(),
        create_time: Some(convert::timestamp(record.create_time)),
    }
}

#[tonic::async_trait]
impl TokenService for Tokens {
    async fn create_token(
        &self,
        request: Request<CreateTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        let caller = authorize_token_management(&request)?;
        let request = request.into_inner();
        let (record, secret) =
            self.book.create(&request.name, &request.scopes, &request.containers).map_err(from_engine)?;
        tracing::info!(token = %record.name, scopes = ?record.scopes, actor = %caller.actor(), "token created");
        Ok(Response::new(CreateTokenResponse { token: Some(token(&record)), secret }))
    }

    async fn list_tokens(&self, request: Request<ListTokensRequest>) -> Result<Response<ListTokensResponse>, Status> {
        authorize_token_management(&request)?;
        let tokens = self.book.list().map_err(from_engine)?;
        Ok(Response::new(ListTokensResponse { tokens: tokens.iter().map(token).collect() }))
    }

    async fn revoke_token(
        &self,
        request: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        let caller = authorize_token_management(&request)?;
        let name = request.into_inner().name;
        self.book.revoke(&name).map_err(from_engine)?;
        tracing::info!(token = %name, actor = %caller.actor(), "token revoked");
        Ok(Response::new(RevokeTokenResponse {}))
    }
}
