//! `alarm-skill`: the local stack and a voice-session client for it.
//!
//! ```text
//! alarm-skill serve                 # the local stack on 127.0.0.1:9000
//! alarm-skill say discover          # "I found 4 devices: ..."
//! alarm-skill say arm away
//! alarm-skill say disarm --pin 4729
//! alarm-skill say --assistant google disarm --pin 4729   # the same through Google's challenge
//! alarm-skill conformance --panel-url URL --api-key-file F   # a panel cloud's vendor checklist
//! alarm-skill import --accounts FILE --panel-url URL --api-key-file F --table T
//! alarm-skill pepper-usage --table T [--retire p1]   # may pepper p1 leave the keyring?
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use alarm_skill::local::demo::DemoConfig;
use alarm_skill::local::say::{Assistant, Utterance, say_through_stack};
use alarm_skill::local::simulator::monitoring::receiver::ReceiverMode;
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
        /// Keep the DC-09 queue and the receiver's journal here, across restarts (a new
        /// temporary directory otherwise).
        #[arg(long)]
        monitoring_dir: Option<PathBuf>,
        /// Start the monitoring receiver in this fault mode (down, drop_ack, nak), as
        /// `POST /sim/monitoring/receiver` sets it: the restart tests keep a backlog queued.
        #[arg(long, hide = true, value_parser = parse_receiver_mode)]
        receiver_mode: Option<ReceiverMode>,
        /// Don't report this center as the panels' monitoring details: the skill's second
        /// path stays off, only the panel cloud reports to the center.
        #[arg(long)]
        no_second_path: bool,
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
        /// Which assistant to play: Alexa (directives) or Google (fulfillment intents).
        #[arg(long, value_enum, default_value = "alexa", global = true)]
        assistant: AssistantArg,
        #[command(subcommand)]
        what: SayCommand,
    },
    /// Run docs/panel-api.md's vendor checklist against a panel cloud (its test environment):
    /// prints a pass/fail table, exits 1 if a check fails, 2 if it could not start.
    Conformance(ConformanceArgs),
    /// Bulk import of existing households: takes each account's members from the panel cloud's
    /// users into the skill's DynamoDB table.
    Import {
        /// One panel-cloud account id per line (blank lines and # comments ignored).
        #[arg(long)]
        accounts: PathBuf,
        #[arg(long)]
        panel_url: String,
        #[arg(long)]
        api_key_file: PathBuf,
        /// The stack's TableName output.
        #[arg(long)]
        table: String,
        /// A local DynamoDB engine instead of AWS (credentials and region from the environment).
        #[arg(long)]
        dynamodb_endpoint: Option<String>,
    },
    /// Counts, per pepper id, the stored voice codes, pending outbox records and Alexa grants
    /// that still name it (docs/deploy.md section 15, "Pepper rotation"). Prints pepper ids and
    /// counts only. With --retire: exit 0 only if the whole table was read and nothing names
    /// that pepper; 1 if something names it or is unreadable; 2 on errors or an incomplete scan.
    PepperUsage {
        /// The stack's TableName output.
        #[arg(long)]
        table: String,
        /// A local DynamoDB engine instead of AWS (credentials and region from the environment
        /// otherwise).
        #[arg(long)]
        dynamodb_endpoint: Option<String>,
        /// The pepper id to be removed from the keyring.
        #[arg(long)]
        retire: Option<String>,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Scan pages read at most (a page reads up to 1 MB); past it the report is incomplete.
        #[arg(long, default_value_t = alarm_skill::adapters::store::pepper_usage::DEFAULT_MAX_PAGES)]
        max_pages: usize,
        /// Items per Scan page (DynamoDB's Limit); DynamoDB's 1 MB pages otherwise.
        #[arg(long, hide = true)]
        page_size: Option<i32>,
    },
}

// The `conformance` command's flags (its help is the variant's doc comment).
#[derive(clap::Args)]
struct ConformanceArgs {
    /// Base URL of the panel cloud API (the skill's PANEL_API_URL).
    #[arg(long)]
    panel_url: String,
    /// File holding the panel API key.
    #[arg(long)]
    api_key_file: PathBuf,
    /// The test account and its panel (disarmed, online, zones closed, no alarm or trouble).
    #[arg(long, default_value = "demo")]
    account: String,
    #[arg(long, default_value = "home")]
    panel: String,
    /// A panel user number of the test account.
    #[arg(long, default_value_t = 1)]
    member: u16,
    /// A second account and its panel, which the test account must not reach.
    #[arg(long, default_value = "neighbor")]
    foreign_account: String,
    #[arg(long, default_value = "cabin")]
    foreign_panel: String,
    /// Address of the kit's webhook receiver.
    #[arg(long, default_value = "127.0.0.1:0")]
    webhook_listen: std::net::SocketAddr,
    /// The receiver's URL as the cloud reaches it, when not http://<listen address>/webhook.
    #[arg(long)]
    webhook_url: Option<String>,
    #[arg(long, default_value_t = 2000)]
    latency_budget_ms: u64,
    /// Normal/duress disarm pairs timed for the equal-work check (a rank test: hundreds).
    #[arg(long, default_value_t = 300)]
    samples: usize,
    /// Wait after a call for the monitoring feed and webhooks to catch up.
    #[arg(long, default_value_t = 300)]
    settle_ms: u64,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// A DynamoDB client: a local engine at `endpoint`, or AWS with the environment's credentials.
async fn dynamodb_client(endpoint: Option<String>) -> aws_sdk_dynamodb::Client {
    match endpoint {
        Some(e) => alarm_skill::adapters::store::dynamodb::local_client(&e),
        None => {
            let sdk = alarm_skill::adapters::aws::sdk_config();
            alarm_skill::adapters::aws::dynamodb_client(&sdk, None)
        }
    }
}

async fn pepper_usage(
    table: &str,
    dynamodb_endpoint: Option<String>,
    retire: Option<&str>,
    json: bool,
    limits: alarm_skill::adapters::store::pepper_usage::ScanLimits,
) -> ExitCode {
    use alarm_skill::adapters::store::pepper_usage::{Retirement, scan};
    if let Some(id) = retire
        && !alarm_skill::domain::voice_codes::Keyring::is_valid_id(id)
    {
        eprintln!("pepper-usage: --retire takes a pepper id (1-32 of [A-Za-z0-9_-])");
        return ExitCode::from(2);
    }
    let client = dynamodb_client(dynamodb_endpoint).await;
    let usage = match scan(&client, table, limits).await {
        Ok(u) => u,
        Err(e) => {
            eprintln!("pepper-usage: {e}");
            return ExitCode::from(2);
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&usage.json(retire)).unwrap_or_default()
        );
    } else {
        print!("{}", usage.table());
        if let Some(id) = retire {
            println!("{}", usage.retirement_line(id));
        }
    }
    match retire.map(|id| usage.retirement(id)) {
        Some(Retirement::Blocked { .. }) => ExitCode::FAILURE,
        // Without a verdict asked for, an incomplete scan is still a failed check.
        Some(Retirement::Incomplete) | None if !usage.complete => {
            eprintln!(
                "pepper-usage: incomplete: the scan stopped after {} pages",
                usage.pages
            );
            ExitCode::from(2)
        }
        _ => ExitCode::SUCCESS,
    }
}

fn parse_receiver_mode(s: &str) -> Result<ReceiverMode, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("{s}: one of none, down, drop_ack, nak"))
}

fn read_key(path: &std::path::Path) -> Result<alarm_skill::common::secret::Secret, String> {
    let key = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(alarm_skill::common::secret::Secret::new(key))
}

async fn import(
    accounts: &std::path::Path,
    panel_url: &str,
    api_key_file: &std::path::Path,
    table: String,
    dynamodb_endpoint: Option<String>,
) -> Result<bool, String> {
    use std::sync::Arc;
    let list: Vec<String> = std::fs::read_to_string(accounts)
        .map_err(|e| format!("cannot read {}: {e}", accounts.display()))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let panels =
        alarm_skill::adapters::panel::HttpPanelCloud::new(panel_url, read_key(api_key_file)?)
            .map_err(|e| e.to_string())?;
    let client = dynamodb_client(dynamodb_endpoint).await;
    let p = alarm_skill::domain::provisioning::Provisioner {
        store: Arc::new(alarm_skill::adapters::store::dynamodb::DynamoStore::new(
            client, table,
        )),
        panels: Arc::new(panels),
        clock: Arc::new(alarm_skill::common::clock::SystemClock),
    };
    let lines = alarm_skill::domain::provisioning::import(&p, &list).await;
    let mut ok = true;
    for line in &lines {
        ok &= line.error.is_none();
        println!("{}", serde_json::to_string(line).unwrap_or_default());
    }
    let failed = lines.iter().filter(|l| l.error.is_some()).count();
    eprintln!(
        "imported {} of {} accounts",
        lines.len() - failed,
        lines.len()
    );
    Ok(ok)
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
        /// The spoken code (4 digits for Alexa; Google's challenge takes it too); omit to
        /// disarm as with an Alexa-managed voice PIN, or to hear Google ask for the code.
        #[arg(long)]
        pin: Option<String>,
        #[arg(long, default_value = "home")]
        endpoint: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum AssistantArg {
    Alexa,
    Google,
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
    alarm_skill::edges::telemetry::init_local();
    // Crash points (FAILPOINTS) for the restart tests; nothing without the `failpoints` feature.
    alarm_skill::common::crash::setup();
    match Cli::parse().command {
        Command::Serve {
            port,
            panel_port,
            receiver_port,
            dc09_key,
            monitoring_dir,
            receiver_mode,
            no_second_path,
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
            // The functions' settings that mean something locally, by their rules.
            let settings = match alarm_skill::edges::config::LocalSettings::from_env() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("cannot start the local stack: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let defaults = Options::default();
            let opts = Options {
                port,
                panel_port,
                receiver_port,
                dc09_key: dc09_key.map(alarm_skill::common::secret::Secret::new),
                monitoring_dir,
                receiver_mode: receiver_mode.unwrap_or_default(),
                // The demo runs the skill's second path to its monitoring center.
                second_path: !no_second_path,
                config,
                dynamodb_endpoint,
                table,
                manufacturer_name: settings
                    .manufacturer_name
                    .unwrap_or(defaults.manufacturer_name.clone()),
                outbox: settings.outbox,
                step_up: settings.step_up,
                ..defaults
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
        Command::Conformance(args) => {
            let api_key = match read_key(&args.api_key_file) {
                Ok(k) => k,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            let opts = alarm_skill::local::conformance::KitOptions {
                account: args.account,
                panel: args.panel,
                member: args.member,
                foreign_account: args.foreign_account,
                foreign_panel: args.foreign_panel,
                webhook_listen: args.webhook_listen,
                webhook_url: args.webhook_url,
                latency_budget: std::time::Duration::from_millis(args.latency_budget_ms),
                timing_samples: args.samples,
                settle: std::time::Duration::from_millis(args.settle_ms),
                ..alarm_skill::local::conformance::KitOptions::new(&args.panel_url, api_key)
            };
            match alarm_skill::local::conformance::run(opts).await {
                Ok(report) => {
                    if args.json {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&report).unwrap_or_default()
                        );
                    } else {
                        print!("{}", report.table());
                    }
                    if report.passed() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("conformance: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Import {
            accounts,
            panel_url,
            api_key_file,
            table,
            dynamodb_endpoint,
        } => match import(
            &accounts,
            &panel_url,
            &api_key_file,
            table,
            dynamodb_endpoint,
        )
        .await
        {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("import: {e}");
                ExitCode::from(2)
            }
        },
        Command::PepperUsage {
            table,
            dynamodb_endpoint,
            retire,
            json,
            max_pages,
            page_size,
        } => {
            let limits = alarm_skill::adapters::store::pepper_usage::ScanLimits {
                page_size,
                max_pages,
            };
            pepper_usage(&table, dynamodb_endpoint, retire.as_deref(), json, limits).await
        }
        Command::Say {
            url,
            account,
            json,
            assistant,
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
            let assistant = match assistant {
                AssistantArg::Alexa => Assistant::Alexa,
                AssistantArg::Google => Assistant::Google,
            };
            match say_through_stack(&url, &account, assistant, &utterance).await {
                Ok((words, reply)) => {
                    println!("{}: {words}", assistant.name());
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
