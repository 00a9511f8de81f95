//! The `prefs` command: parses the command line and runs the chosen subcommand.

use std::sync::Arc;

use clap::Parser;
use prefs::cli::{Cli, Command, LogFormat, ServeArgs, UsersCommand};
use prefs::{Application, telemetry};
use prefs_domain::{Limits, PreferenceService, UserId};
use prefs_storage::DieselStore;
use utoipa::OpenApi;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _log = telemetry::init(cli.log_format == LogFormat::Json);
    match cli.command {
        None => serve(&cli.serve).await,
        Some(Command::Serve(args)) => serve(&args).await,
        Some(Command::Migrate(args)) => {
            let store = DieselStore::connect(&args.store_config()).await?;
            store.migrate().await?;
            println!("migrations are up to date ({})", store.backend());
            Ok(())
        }
        Some(Command::Token(args)) => {
            println!("{}", prefs_http::auth::mint(args.jwt_secret.as_bytes(), &args.claims.claims())?);
            Ok(())
        }
        Some(Command::Openapi) => {
            println!("{}", prefs_http::ApiDoc::openapi().to_pretty_json()?);
            Ok(())
        }
        Some(Command::Users(command)) => users(command).await,
    }
}

/// `prefs users ...`: operator commands, straight on the database (migrated first).
async fn users(command: UsersCommand) -> anyhow::Result<()> {
    let store = DieselStore::connect(&command.database().store_config()).await?;
    store.migrate().await?;
    let service = PreferenceService::new(Arc::new(store), Limits::default());
    let output = match command {
        UsersCommand::Add { subject, username, id, .. } => {
            prefs::users::user_json(&service.add_user(&subject, &username, id.map(UserId)).await?)
        }
        UsersCommand::Export { username, .. } => {
            let (user, preferences) = service.export_user(&username).await?;
            prefs::users::export_json(&user, &preferences)
        }
        UsersCommand::Remove { username, .. } => {
            let user = service.remove_user(&username).await?;
            serde_json::json!({ "removed": prefs::users::user_json(&user) })
        }
    };
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}

async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let (settings, dev_secret) = args.settings()?;
    let app = Application::build(settings).await?;
    tracing::info!(port = app.port(), "prefs is listening");
    if let Some(secret) = dev_secret {
        print_dev_tokens(&secret, app.port())?;
    }
    app.run_until_stopped().await?;
    Ok(())
}

/// `--dev`: tokens for a demo user, a staff user and an admin, signed with the random secret.
fn print_dev_tokens(secret: &[u8], port: u16) -> anyhow::Result<()> {
    println!("prefs --dev: listening on http://127.0.0.1:{port} with a random secret. Tokens (valid 24 h):");
    for (sub, roles) in
        [("demo", vec![]), ("stella", vec!["staff".to_owned()]), ("ada", vec!["admin".to_owned()])]
    {
        let args = prefs::cli::ClaimArgs {
            sub: sub.to_owned(),
            username: None,
            roles,
            scopes: vec!["user:preferences:read".into(), "user:preferences:write".into()],
            client_id: Some("demo-app".into()),
            ttl: std::time::Duration::from_secs(24 * 3600),
        };
        let token = prefs_http::auth::mint(secret, &args.claims())?;
        println!("  {sub:<7} export TOKEN_{}={token}", sub.to_uppercase());
    }
    Ok(())
}
