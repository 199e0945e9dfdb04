//! `alarm-skill`: the local stack and a voice-session client for it.
//!
//! ```text
//! alarm-skill serve                 # the local stack on 127.0.0.1:9000
//! alarm-skill say discover          # "I found 4 devices: ..."
//! alarm-skill say arm away
//! alarm-skill say disarm --pin 4729
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use alarm_skill::local::demo::DemoConfig;
use alarm_skill::local::say::{Say, Utterance};
use alarm_skill::local::{BANNER, LocalStack, Options};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "alarm-skill",
    version,
    about = "Alexa security-panel skill: local stack and voice client"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the local stack: the skill, the panel simulator, the dev token issuer, the
    /// management API and the webhook, on 127.0.0.1.
    Serve {
        #[arg(long, default_value_t = 9000)]
        port: u16,
        /// Port of the simulated panel cloud API.
        #[arg(long, default_value_t = 9001)]
        panel_port: u16,
        /// Port of the monitoring center's SIA DC-09 receiver (TCP).
        #[arg(long, default_value_t = 9002)]
        receiver_port: u16,
        /// Encrypt the DC-09 link with this AES-128 key (32 hex digits).
        #[arg(long, env = "DC09_KEY", hide_env_values = true)]
        dc09_key: Option<String>,
        /// Household and panels to simulate (JSON); the built-in demo household otherwise.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Keep data in DynamoDB at this endpoint (e.g. DynamoDB Local) instead of in memory.
        #[arg(long)]
        dynamodb_endpoint: Option<String>,
        #[arg(long, default_value = "alarm-skill-local")]
        table: String,
    },
    /// Speak to the running local stack as Alexa would, and print Alexa's answer.
    Say {
        /// The local stack's address.
        #[arg(long, default_value = "http://127.0.0.1:9000", global = true)]
        url: String,
        /// The account to link as (any name; an unknown one is an account without panels).
        #[arg(long, default_value = "demo", global = true)]
        account: String,
        /// Also print the raw JSON reply.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        what: SayCommand,
    },
}

#[derive(Subcommand)]
enum SayCommand {
    /// "Alexa, discover my devices."
    Discover,
    /// "Alexa, is Home armed?"
    Status {
        #[arg(long, default_value = "home")]
        endpoint: String,
    },
    /// "Alexa, arm Home in away mode."
    Arm {
        mode: Mode,
        #[arg(long, default_value = "home")]
        endpoint: String,
        /// Answer "yes" when Alexa offers to bypass open zones.
        #[arg(long)]
        bypass: bool,
    },
    /// "Alexa, disarm Home." then the voice PIN.
    Disarm {
        /// The spoken 4-digit code; omit to disarm as with an Alexa-managed voice PIN.
        #[arg(long)]
        pin: Option<String>,
        #[arg(long, default_value = "home")]
        endpoint: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Away,
    Stay,
    Night,
}

impl Mode {
    fn alexa(self) -> &'static str {
        match self {
            Mode::Away => "ARMED_AWAY",
            Mode::Stay => "ARMED_STAY",
            Mode::Night => "ARMED_NIGHT",
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    alarm_skill::telemetry::init_local();
    match Cli::parse().command {
        Command::Serve {
            port,
            panel_port,
            receiver_port,
            dc09_key,
            config,
            dynamodb_endpoint,
            table,
        } => {
            let config = match config {
                None => DemoConfig::demo(),
                Some(path) => match std::fs::read_to_string(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|s| DemoConfig::parse(&s).map_err(|e| e.to_string()))
                {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("cannot load {}: {e}", path.display());
                        return ExitCode::FAILURE;
                    }
                },
            };
            let opts = Options {
                port,
                panel_port,
                receiver_port,
                dc09_key: dc09_key.map(alarm_skill::secret::Secret::new),
                config,
                dynamodb_endpoint,
                table,
                ..Options::default()
            };
            let stack = match LocalStack::start(opts).await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("cannot start the local stack: {e}");
                    return ExitCode::FAILURE;
                }
            };
            println!("{BANNER} listening on {}", stack.base_url);
            println!(
                "  directives:     POST {}{}",
                stack.base_url,
                alarm_skill::local::INVOKE_PATH
            );
            println!(
                "  dev tokens:     POST {}/dev/token {{\"sub\":\"demo\"}}",
                stack.base_url
            );
            println!("  simulator:      GET  {}/sim/panels", stack.base_url);
            println!("  panel cloud API:     http://{}", stack.panel_api.addr());
            println!(
                "  DC-09 receiver:      tcp://{}   (GET {}/sim/monitoring)",
                stack.receiver.addr(),
                stack.base_url
            );
            println!("Try: alarm-skill say discover   (Ctrl-C stops)");
            stack.wait().await;
            ExitCode::SUCCESS
        }
        Command::Say {
            url,
            account,
            json,
            what,
        } => {
            let utterance = match what {
                SayCommand::Discover => Utterance::Discover,
                SayCommand::Status { endpoint } => Utterance::Status { endpoint },
                SayCommand::Arm {
                    mode,
                    endpoint,
                    bypass,
                } => Utterance::Arm {
                    endpoint,
                    mode: mode.alexa(),
                    bypass,
                },
                SayCommand::Disarm { pin, endpoint } => Utterance::Disarm { endpoint, pin },
            };
            match Say::new(&url, &account).say(&utterance).await {
                Ok((words, reply)) => {
                    println!("Alexa: {words}");
                    if json {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&reply).unwrap_or_default()
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
