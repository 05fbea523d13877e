//! The simulated fleet: services, models, the pairs that call each other, tenants and the
//! rates at which optional fields appear.

pub(crate) struct Service {
    pub(crate) name: &'static str,
    pub(crate) categories: &'static [&'static str],
    /// Prediction mix before / after a drift onset.
    pub(crate) steady_mix: &'static [u16],
    pub(crate) drift_mix: &'static [u16],
    /// Agent services run multi-step sessions with tools; empty for single-call services.
    pub(crate) tools: &'static [&'static str],
}

pub(crate) const CHECKOUT: usize = 0;
pub(crate) const SUPPORT: usize = 1;
pub(crate) const SEARCH: usize = 2;
pub(crate) const FRAUD: usize = 3;

pub(crate) const SERVICES: [Service; 4] = [
    Service {
        name: "checkout-assistant",
        categories: &["recommend", "add_to_cart", "answer_question", "escalate"],
        steady_mix: &[40, 25, 30, 5],
        drift_mix: &[20, 10, 45, 25],
        tools: &[
            "search_catalog",
            "get_cart",
            "check_inventory",
            "apply_coupon",
            "create_order",
        ],
    },
    Service {
        name: "support-bot",
        categories: &["billing", "technical", "account", "shipping", "other"],
        steady_mix: &[30, 25, 20, 20, 5],
        drift_mix: &[15, 20, 15, 15, 35],
        tools: &[
            "lookup_order",
            "search_kb",
            "get_customer",
            "create_ticket",
            "issue_refund",
        ],
    },
    Service {
        name: "search-rerank",
        categories: &["relevant", "partially_relevant", "irrelevant"],
        steady_mix: &[55, 30, 15],
        drift_mix: &[30, 30, 40],
        tools: &[],
    },
    Service {
        name: "fraud-screen",
        categories: &["legit", "review", "fraud"],
        steady_mix: &[90, 8, 2],
        drift_mix: &[70, 20, 10],
        tools: &[],
    },
];

pub(crate) struct Model {
    pub(crate) name: &'static str,
    pub(crate) version: &'static str,
    pub(crate) latency_median_ms: f64,
    pub(crate) latency_sigma: f64,
    /// List prices, US dollars per million tokens: input, cached input, output.
    pub(crate) price_in: f64,
    pub(crate) price_cached: f64,
    pub(crate) price_out: f64,
    pub(crate) prompt_cache: bool,
    /// Offset of this model's mean confidence.
    pub(crate) confidence_offset: f64,
}

pub(crate) const MODELS: [Model; 5] = [
    Model {
        name: "gpt-4o",
        version: "2024-11-20",
        latency_median_ms: 650.0,
        latency_sigma: 0.55,
        price_in: 2.50,
        price_cached: 1.25,
        price_out: 10.00,
        prompt_cache: true,
        confidence_offset: 0.03,
    },
    Model {
        name: "gpt-4o-mini",
        version: "2024-07-18",
        latency_median_ms: 280.0,
        latency_sigma: 0.5,
        price_in: 0.15,
        price_cached: 0.075,
        price_out: 0.60,
        prompt_cache: true,
        confidence_offset: -0.02,
    },
    Model {
        name: "claude-sonnet-4",
        version: "20250514",
        latency_median_ms: 900.0,
        latency_sigma: 0.6,
        price_in: 3.00,
        price_cached: 0.30,
        price_out: 15.00,
        prompt_cache: true,
        confidence_offset: 0.02,
    },
    Model {
        name: "llama-3.1-70b",
        version: "instruct-2024-07-23",
        latency_median_ms: 420.0,
        latency_sigma: 0.65,
        price_in: 0.88,
        price_cached: 0.88,
        price_out: 0.88,
        prompt_cache: false,
        confidence_offset: -0.03,
    },
    Model {
        name: "text-embedding-3-small",
        version: "1",
        latency_median_ms: 80.0,
        latency_sigma: 0.4,
        price_in: 0.02,
        price_cached: 0.02,
        price_out: 0.0,
        prompt_cache: false,
        confidence_offset: 0.0,
    },
];

pub(crate) const GPT4O: u8 = 0;
pub(crate) const MINI: u8 = 1;
pub(crate) const CLAUDE: u8 = 2;
pub(crate) const LLAMA: u8 = 3;
pub(crate) const EMBED: u8 = 4;

/// One (service, model) combination as it appears in traffic.
pub(crate) struct Pair {
    pub(crate) service: usize,
    pub(crate) model: u8,
    pub(crate) route: &'static str,
    pub(crate) tokens_in_median: f64,
    pub(crate) tokens_in_sigma: f64,
    /// 0 for calls without output tokens (embeddings), which also make no prediction.
    pub(crate) tokens_out_median: f64,
    pub(crate) tokens_out_sigma: f64,
}

pub(crate) const fn pair(
    service: usize,
    model: u8,
    route: &'static str,
    tin: (f64, f64),
    tout: (f64, f64),
) -> Pair {
    Pair {
        service,
        model,
        route,
        tokens_in_median: tin.0,
        tokens_in_sigma: tin.1,
        tokens_out_median: tout.0,
        tokens_out_sigma: tout.1,
    }
}

pub(crate) const PAIRS: [Pair; 10] = [
    pair(CHECKOUT, GPT4O, "/v1/chat", (1200.0, 0.7), (180.0, 0.7)),
    pair(CHECKOUT, MINI, "/v1/chat", (1200.0, 0.7), (180.0, 0.7)),
    pair(CHECKOUT, CLAUDE, "/v1/chat", (1200.0, 0.7), (180.0, 0.7)),
    pair(
        SUPPORT,
        CLAUDE,
        "/v1/support/chat",
        (900.0, 0.8),
        (250.0, 0.8),
    ),
    pair(
        SUPPORT,
        MINI,
        "/v1/support/chat",
        (900.0, 0.8),
        (250.0, 0.8),
    ),
    pair(
        SUPPORT,
        LLAMA,
        "/v1/support/chat",
        (900.0, 0.8),
        (250.0, 0.8),
    ),
    pair(2, EMBED, "/v1/embed", (40.0, 0.6), (0.0, 0.0)),
    pair(2, LLAMA, "/v1/rank", (2000.0, 0.5), (40.0, 0.3)),
    pair(3, MINI, "/v1/classify", (600.0, 0.4), (8.0, 0.3)),
    pair(3, LLAMA, "/v1/classify", (600.0, 0.4), (8.0, 0.3)),
];

/// Share of traffic per pair, per mille: checkout 30%, support 35%, search 18%, fraud 17%.
pub(crate) const PAIR_WEIGHTS: [u16; 10] = [120, 130, 50, 150, 120, 80, 120, 60, 120, 50];

pub(crate) const TENANTS: [&str; 8] = [
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "stark-industries",
    "wayne-enterprises",
    "tyrell",
];
pub(crate) const TENANT_WEIGHTS: [u16; 8] = [30, 20, 15, 10, 10, 7, 5, 3];
pub(crate) const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-southeast-2"];
pub(crate) const CLIENTS: [&str; 3] = ["web", "ios", "android"];
pub(crate) const APPROVALS: [&str; 3] = ["approved", "rejected", "pending"];
pub(crate) const APPROVAL_WEIGHTS: [u16; 3] = [88, 8, 4];

pub(crate) const FLAG_HALLUCINATION: u8 = 1;
pub(crate) const FLAG_PII: u8 = 2;
pub(crate) const FLAG_POLICY: u8 = 4;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Status {
    #[default]
    Ok,
    Error,
    Timeout,
    Refused,
    Filtered,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
            Status::Timeout => "timeout",
            Status::Refused => "refused",
            Status::Filtered => "filtered",
        }
    }
}
