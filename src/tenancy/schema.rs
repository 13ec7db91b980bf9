//! The form.io schemas an admin UI renders for tenants and services.

use super::*;

/// The form.io form of a tenant.
pub fn tenant_schema() -> serde_json::Value {
    serde_json::json!({
        "display": "form",
        "components": [
            text_field("id", "ID", false, None, "UUID; generated when empty"),
            text_field("name", "Name", true, Some(NAME_MAX), "The municipality's name"),
            text_field("tax_identification_number", "Tax identification number", true, Some(16),
                "Codice fiscale or partita IVA (checksum verified)"),
            checkbox("active", "Active", true),
            {
                "type": "textfield", "key": "allowed_hosts", "label": "Allowed hosts", "input": true,
                "multiple": true,
                "description": "Hosts the tenant's services may call or send citizens to: pay.example.it, *.comune.example.it, http://host:port for plain http (admins only)",
                "validate": {"pattern": "^(https?://)?(\\*\\.)?[A-Za-z0-9.\\-\\[\\]:]+$"}
            },
            submit(),
        ]
    })
}

/// The form.io form of a service's payment configuration.
pub fn service_schema() -> serde_json::Value {
    serde_json::json!({
        "display": "form",
        "components": [
            text_field("id", "ID", false, None, "UUID; generated when empty"),
            text_field("tenant_id", "Tenant", true, None, "The tenant's UUID"),
            {
                "type": "select", "key": "payment_type", "label": "Payment type", "input": true,
                "multiple": true,
                "data": {"values": [
                    {"label": "pagoPA", "value": "PAGOPA"},
                    {"label": "Wallet", "value": "WALLET"}
                ]},
                "validate": {"required": true}
            },
            {
                "type": "fieldset", "key": "remote_collection", "legend": "Remote collection", "tree": true,
                "components": [
                    text_field("remote_collection.id", "ID", false, Some(NAME_MAX), "The platform's id of what is collected for"),
                    {
                        "type": "select", "key": "remote_collection.type", "label": "Type", "input": true,
                        "data": {"values": [
                            {"label": "Application", "value": "application"},
                            {"label": "Service", "value": "service"},
                            {"label": "Other", "value": "other"}
                        ]}
                    }
                ]
            },
            {
                "type": "currency", "key": "amount", "label": "Amount", "input": true, "currency": "EUR",
                "decimalLimit": 2, "validate": {"min": 0.01, "max": 999_999_999.99}
            },
            money_field("amount_min", "Lowest amount (variable fees)"),
            money_field("amount_max", "Highest amount (variable fees)"),
            checkbox("wallet_top_up", "Wallet top-up service", false),
            money_field("top_up_max", "Largest top-up (top-up service)"),
            money_field("balance_max", "Largest wallet balance (top-up service)"),
            text_field("reason", "Reason", true, Some(NAME_MAX), "Shown to the citizen"),
            {
                "type": "number", "key": "expire_at", "label": "Expires after (days)", "input": true,
                "validate": {"min": 1, "max": EXPIRE_DAYS_MAX, "integer": true}
            },
            {
                "type": "fieldset", "key": "receiver", "legend": "Receiver", "tree": true,
                "components": [
                    text_field("receiver.tax_identification_number", "Tax identification number", true, Some(16),
                        "Codice fiscale or partita IVA (checksum verified)"),
                    text_field("receiver.name", "Name", true, Some(NAME_MAX), "")
                ]
            },
            {
                "type": "textfield", "key": "collection_data", "label": "pagoPA taxonomy", "input": true,
                "placeholder": "9/0101108TS/",
                "validate": {"pattern": "^(9/)?[0-9]{7}[A-Za-z]{2}/?$"}
            },
            checkbox("active", "Active", true),
            {
                "type": "fieldset", "key": "intermediary", "legend": "Intermediary", "tree": true,
                "components": [
                    {
                        "type": "select", "key": "intermediary.kind", "label": "Kind", "input": true,
                        "data": {"values": INTERMEDIARY_KINDS.iter().map(|k| serde_json::json!({"label": k, "value": k})).collect::<Vec<_>>()},
                        "validate": {"required": true}
                    },
                    {
                        "type": "url", "key": "intermediary.url", "label": "URL", "input": true,
                        "description": "https, on a host the tenant's allowed_hosts or CASSA_OUTBOUND_ALLOW allow",
                        "validate": {"required": true, "pattern": "^https?://[^\\s\"'\\\\<>`@]+$"}
                    },
                    text_field("intermediary.credentials.username", "Username", false, Some(CREDENTIAL_MAX), ""),
                    {
                        "type": "password", "key": "intermediary.credentials.password", "label": "Password",
                        "input": true, "protected": true,
                        "description": "Stored encrypted, never shown again; leave ******** to keep it"
                    },
                    {
                        "type": "password", "key": "intermediary.credentials.api_key", "label": "API key",
                        "input": true, "protected": true,
                        "description": "Stored encrypted, never shown again; leave ******** to keep it"
                    },
                    {
                        "type": "password", "key": "intermediary.credentials.push_secret", "label": "Push secret",
                        "input": true, "protected": true,
                        "description": "Shared with the intermediary, which signs its pushes with it (X-Cassa-Signature: sha256=<HMAC-SHA256 of the body>); without it pushes are refused. Stored encrypted; leave ******** to keep it"
                    }
                ]
            },
            {
                "type": "url", "key": "landing_url", "label": "Landing URL", "input": true,
                "placeholder": "https://servizi.comune.example.it/pagamenti/{payment_id}",
                "description": "Where citizens return after paying ({payment_id} is filled in); https, on an allowed host",
                "validate": {"pattern": "^https?://[^\\s\"'\\\\<>`@]+$"}
            },
            submit(),
        ]
    })
}

fn text_field(
    key: &str,
    label: &str,
    required: bool,
    max: Option<usize>,
    description: &str,
) -> serde_json::Value {
    let mut validate = serde_json::json!({"required": required});
    if let Some(max) = max {
        validate["maxLength"] = max.into();
    }
    serde_json::json!({
        "type": "textfield", "key": key, "label": label, "input": true,
        "description": description, "validate": validate
    })
}

fn money_field(key: &str, label: &str) -> serde_json::Value {
    serde_json::json!({
        "type": "currency", "key": key, "label": label, "input": true, "currency": "EUR",
        "decimalLimit": 2, "validate": {"min": 0.01, "max": 999_999_999.99}
    })
}

fn checkbox(key: &str, label: &str, default: bool) -> serde_json::Value {
    serde_json::json!({"type": "checkbox", "key": key, "label": label, "input": true, "defaultValue": default})
}

fn submit() -> serde_json::Value {
    serde_json::json!({"type": "button", "key": "submit", "label": "Save", "action": "submit", "input": true})
}
