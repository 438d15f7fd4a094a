//! `rollpoint token ...`

use super::Context;
use crate::api::client::Target;
use crate::api::proto;
use crate::cli::args::{TokenCommand, TokenCreateArgs};
use crate::cli::error::CliError;
use crate::cli::views::{ListView, RevokedTokenView, TokenCreatedView, TokenView};

pub async fn run(context: &mut Context, command: TokenCommand) -> Result<(), CliError> {
    let tokens = &mut context.clients.tokens;
    match command {
        TokenCommand::Create(TokenCreateArgs { name, scopes, containers }) => {
            let response = tokens.create_token(proto::CreateTokenRequest { name, scopes, containers }).await;
            let created = response.map_err(|status| context.fail(status))?.into_inner();
            let endpoint = match &context.target {
                Target::Tcp(url) => Some(url.clone()),
                Target::Unix(_) => None,
            };
            context.emit(&TokenCreatedView {
                token: TokenView::from(created.token.unwrap_or_default()),
                secret: created.secret,
                endpoint,
            })?;
        }
        TokenCommand::List => {
            let response = tokens.list_tokens(proto::ListTokensRequest {}).await;
            let list = response.map_err(|status| context.fail(status))?.into_inner().tokens;
            context.emit(&ListView(list.into_iter().map(TokenView::from).collect()))?;
        }
        TokenCommand::Revoke { name } => {
            let response = tokens.revoke_token(proto::RevokeTokenRequest { name: name.clone() }).await;
            response.map_err(|status| context.fail(status))?;
            context.emit(&RevokedTokenView { name })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::args::{Cli, Command, TokenCommand};

    fn create(argv: &str) -> Result<(String, Vec<String>, Vec<String>), clap::Error> {
        let cli = Cli::try_parse_from(format!("rollpoint token create {argv}").split_whitespace())?;
        match cli.command {
            Command::Token(TokenCommand::Create(args)) => Ok((args.name, args.scopes, args.containers)),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn scopes_repeat_or_comma_separate() {
        let (name, scopes, containers) =
            create("--name ci --scope read,snapshot --scope restore --container db-1 --container db-2").unwrap();
        assert_eq!(name, "ci");
        assert_eq!(scopes, ["read", "snapshot", "restore"]);
        assert_eq!(containers, ["db-1", "db-2"]);
    }

    #[test]
    fn unknown_or_missing_scopes_are_usage_errors() {
        assert!(create("--name ci --scope write").is_err());
        assert!(create("--name ci").is_err());
        let (_, scopes, containers) = create("--name root-ops --scope admin").unwrap();
        assert_eq!((scopes, containers), (vec!["admin".to_owned()], vec![]));
    }
}
