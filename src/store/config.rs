//! The operators' configuration in the database: tenants and services' payment configs.
//! The queries are written once for both backends (as in `sql/`) and instantiated per
//! backend by `config_store!`. Service credentials arrive here already
//! sealed; this layer never sees them in the clear.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row};
use uuid::Uuid;

use super::sql::{PgStore, SqliteStore};
use super::StoreError;
use crate::domain::payment::PaymentType;

/// A tenant (a municipality). Deleting one only clears `active`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    pub tax_identification_number: String,
    pub active: bool,
    /// Host patterns this tenant's configuration may call or redirect to, besides the
    /// global `CASSA_OUTBOUND_ALLOW` (see `outbound`).
    pub allowed_hosts: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Bumped by every update; an update names the version it read.
    pub version: i64,
}

/// A service's payment configuration: which payment types it takes, where its
/// intermediary (and gateway) lives, the rest of its public document, and its sealed
/// intermediary credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub payment_types: Vec<PaymentType>,
    pub intermediary_kind: String,
    pub intermediary_url: String,
    pub active: bool,
    /// The public configuration document (`tenancy::ServiceBody` without credentials);
    /// `{}` for rows older than the configuration API.
    pub document: serde_json::Value,
    /// Credentials sealed by `secrets::SecretBox`.
    pub credentials: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Bumped by every update; an update names the version it read.
    pub version: i64,
}

impl std::fmt::Debug for ServiceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceConfig")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("payment_types", &self.payment_types)
            .field("intermediary_url", &self.intermediary_url)
            .field("active", &self.active)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "(sealed)"),
            )
            .finish_non_exhaustive()
    }
}

/// A page request of a configuration list: at most `limit` rows with an id after `after`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Page {
    pub after: Option<Uuid>,
    pub limit: i64,
}

/// Tenants and services.
#[async_trait]
pub trait ConfigStore: Send + Sync {
    /// Creates the tenant unless it exists (seeding).
    async fn ensure_tenant(&self, tenant: &Tenant) -> Result<(), StoreError>;
    /// Creates the service config unless it exists (seeding).
    async fn ensure_service(&self, service: &ServiceConfig) -> Result<(), StoreError>;
    /// Reads a tenant (active or not).
    async fn tenant(&self, id: Uuid) -> Result<Option<Tenant>, StoreError>;
    /// Tenants by id (only `only`, when given).
    async fn list_tenants(&self, only: Option<Uuid>, page: Page)
        -> Result<Vec<Tenant>, StoreError>;
    /// Inserts a tenant; `false` when the id is taken.
    async fn insert_tenant(&self, tenant: &Tenant) -> Result<bool, StoreError>;
    /// Rewrites a tenant's fields (not `created_at`) if it still has `tenant.version`;
    /// `false` when it changed since (or does not exist).
    async fn update_tenant(&self, tenant: &Tenant) -> Result<bool, StoreError>;
    /// Reads a service config (active or not).
    async fn service(&self, id: Uuid) -> Result<Option<ServiceConfig>, StoreError>;
    /// Service configs by id, of one tenant when given.
    async fn list_services(
        &self,
        tenant: Option<Uuid>,
        page: Page,
    ) -> Result<Vec<ServiceConfig>, StoreError>;
    /// Inserts a service config; `false` when the id is taken.
    async fn insert_service(&self, service: &ServiceConfig) -> Result<bool, StoreError>;
    /// Rewrites a service config (not `created_at`) if it still has `service.version`;
    /// `false` when it changed since (or does not exist).
    async fn update_service(&self, service: &ServiceConfig) -> Result<bool, StoreError>;
}

const TENANT_COLUMNS: &str =
    "id, name, tax_identification_number, active, created_at, updated_at, version, allowed_hosts";
const SERVICE_COLUMNS: &str = "id, tenant_id, payment_types, intermediary_kind, intermediary_url, \
     active, document, credentials, created_at, updated_at, version";

fn types_text(types: &[PaymentType]) -> String {
    types
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_types(text: &str) -> Vec<PaymentType> {
    text.split(',')
        .filter_map(|t| match t {
            "PAGOPA" => Some(PaymentType::Pagopa),
            "WALLET" => Some(PaymentType::Wallet),
            _ => None,
        })
        .collect()
}

fn hosts_text(hosts: &[String]) -> String {
    serde_json::Value::from(hosts.to_vec()).to_string()
}

fn document_text(document: &serde_json::Value) -> String {
    if document.is_null() {
        "{}".to_string()
    } else {
        document.to_string()
    }
}

macro_rules! config_store {
    ($store:ty, $db:ty) => {
        impl $store {
            fn row_to_tenant(row: &<$db as sqlx::Database>::Row) -> Result<Tenant, StoreError> {
                Ok(Tenant {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    tax_identification_number: row.try_get("tax_identification_number")?,
                    active: row.try_get("active")?,
                    allowed_hosts: {
                        let text: String = row.try_get("allowed_hosts")?;
                        serde_json::from_str(&text).map_err(|e| {
                            StoreError::Unexpected(anyhow::anyhow!("tenant allowed_hosts: {e}"))
                        })?
                    },
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                    version: row.try_get("version")?,
                })
            }

            fn row_to_service(
                row: &<$db as sqlx::Database>::Row,
            ) -> Result<ServiceConfig, StoreError> {
                let types: String = row.try_get("payment_types")?;
                let document: String = row.try_get("document")?;
                Ok(ServiceConfig {
                    id: row.try_get("id")?,
                    tenant_id: row.try_get("tenant_id")?,
                    payment_types: parse_types(&types),
                    intermediary_kind: row.try_get("intermediary_kind")?,
                    intermediary_url: row.try_get("intermediary_url")?,
                    active: row.try_get("active")?,
                    document: serde_json::from_str(&document)
                        .map_err(|e| StoreError::Unexpected(anyhow::anyhow!("service document: {e}")))?,
                    credentials: row.try_get("credentials")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                    version: row.try_get("version")?,
                })
            }

            async fn insert_service_row(
                &self,
                service: &ServiceConfig,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(&format!(
                    "INSERT INTO services ({SERVICE_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0) ON CONFLICT (id) DO NOTHING"
                ))
                .bind(service.id)
                .bind(service.tenant_id)
                .bind(types_text(&service.payment_types))
                .bind(&service.intermediary_kind)
                .bind(&service.intermediary_url)
                .bind(service.active)
                .bind(document_text(&service.document))
                .bind(&service.credentials)
                .bind(service.created_at)
                .bind(service.updated_at)
                .execute(&self.write)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            /// A page of a configuration table in id order, optionally where `column = id`.
            async fn page_of(
                &self,
                columns: &str,
                table: &str,
                only: Option<(&str, Uuid)>,
                page: Page,
            ) -> Result<Vec<<$db as sqlx::Database>::Row>, StoreError> {
                let mut query: QueryBuilder<$db> =
                    QueryBuilder::new(format!("SELECT {columns} FROM {table} WHERE 1 = 1"));
                if let Some((column, id)) = only {
                    query.push(format!(" AND {column} = ")).push_bind(id);
                }
                if let Some(after) = page.after {
                    query.push(" AND id > ").push_bind(after);
                }
                query.push(" ORDER BY id LIMIT ").push_bind(page.limit);
                Ok(query.build().fetch_all(&self.read).await?)
            }

            async fn insert_tenant_row(&self, tenant: &Tenant) -> Result<bool, StoreError> {
                let done = sqlx::query(&format!(
                    "INSERT INTO tenants ({TENANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, 0, $7) \
                     ON CONFLICT (id) DO NOTHING"
                ))
                .bind(tenant.id)
                .bind(&tenant.name)
                .bind(&tenant.tax_identification_number)
                .bind(tenant.active)
                .bind(tenant.created_at)
                .bind(tenant.updated_at)
                .bind(hosts_text(&tenant.allowed_hosts))
                .execute(&self.write)
                .await?;
                Ok(done.rows_affected() == 1)
            }
        }

        #[async_trait]
        impl ConfigStore for $store {
            async fn ensure_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
                self.insert_tenant_row(tenant).await.map(|_| ())
            }

            async fn ensure_service(&self, service: &ServiceConfig) -> Result<(), StoreError> {
                if self.insert_service_row(service).await? {
                    return Ok(());
                }
                // Rows seeded before the configuration API have no document yet.
                sqlx::query("UPDATE services SET document = $2 WHERE id = $1 AND document = '{}'")
                    .bind(service.id)
                    .bind(document_text(&service.document))
                    .execute(&self.write)
                    .await?;
                Ok(())
            }

            async fn tenant(&self, id: Uuid) -> Result<Option<Tenant>, StoreError> {
                let row = sqlx::query(&format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.read)
                    .await?;
                row.as_ref().map(Self::row_to_tenant).transpose()
            }

            async fn list_tenants(
                &self,
                only: Option<Uuid>,
                page: Page,
            ) -> Result<Vec<Tenant>, StoreError> {
                let only = only.map(|id| ("id", id));
                let rows = self.page_of(TENANT_COLUMNS, "tenants", only, page).await?;
                rows.iter().map(Self::row_to_tenant).collect()
            }

            async fn insert_tenant(&self, tenant: &Tenant) -> Result<bool, StoreError> {
                self.insert_tenant_row(tenant).await
            }

            async fn update_tenant(&self, tenant: &Tenant) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE tenants SET name = $2, tax_identification_number = $3, active = $4, \
                     updated_at = $5, allowed_hosts = $7, version = version + 1 \
                     WHERE id = $1 AND version = $6",
                )
                .bind(tenant.id)
                .bind(&tenant.name)
                .bind(&tenant.tax_identification_number)
                .bind(tenant.active)
                .bind(tenant.updated_at)
                .bind(tenant.version)
                .bind(hosts_text(&tenant.allowed_hosts))
                .execute(&self.write)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn service(&self, id: Uuid) -> Result<Option<ServiceConfig>, StoreError> {
                let row = sqlx::query(&format!("SELECT {SERVICE_COLUMNS} FROM services WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.read)
                    .await?;
                row.as_ref().map(Self::row_to_service).transpose()
            }

            async fn list_services(
                &self,
                tenant: Option<Uuid>,
                page: Page,
            ) -> Result<Vec<ServiceConfig>, StoreError> {
                let tenant = tenant.map(|id| ("tenant_id", id));
                let rows = self.page_of(SERVICE_COLUMNS, "services", tenant, page).await?;
                rows.iter().map(Self::row_to_service).collect()
            }

            async fn insert_service(&self, service: &ServiceConfig) -> Result<bool, StoreError> {
                self.insert_service_row(service).await
            }

            async fn update_service(&self, service: &ServiceConfig) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE services SET tenant_id = $2, payment_types = $3, intermediary_kind = $4, \
                     intermediary_url = $5, active = $6, document = $7, credentials = $8, updated_at = $9, \
                     version = version + 1 WHERE id = $1 AND version = $10",
                )
                .bind(service.id)
                .bind(service.tenant_id)
                .bind(types_text(&service.payment_types))
                .bind(&service.intermediary_kind)
                .bind(&service.intermediary_url)
                .bind(service.active)
                .bind(document_text(&service.document))
                .bind(&service.credentials)
                .bind(service.updated_at)
                .bind(service.version)
                .execute(&self.write)
                .await?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

config_store!(PgStore, sqlx::Postgres);
config_store!(SqliteStore, sqlx::Sqlite);
