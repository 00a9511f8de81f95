//! The `prefs` command: parses the command line and runs the chosen subcommand.

use clap::Parser;
use prefs::cli::{Cli, Command, LogFormat, ServeArgs};
use prefs::{Application, telemetry};
use prefs_storage::DieselStore;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init(cli.log_format == LogFormat::Json);
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
    }
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
