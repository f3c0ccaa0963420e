//! Secrets Manager: the production secret store. Stages map to Secrets
//! Manager's version stages; `AWS_ENDPOINT_URL_SECRETS_MANAGER` points it at
//! an emulator with no code change.

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

use crate::domain::SecretRef;

use super::{SecretError, SecretStore, SecretValue, Stage};

#[derive(Clone)]
pub struct SecretsManagerStore {
    client: Client,
    /// Days a deleted secret stays recoverable (7–30).
    recovery_days: i64,
}

impl SecretsManagerStore {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            recovery_days: 7,
        }
    }

    pub async fn from_env() -> Self {
        let config = aws_config::load_from_env().await;
        Self::new(Client::new(&config))
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// Maps an SDK error without its request (which would carry the value of a
/// `PutSecretValue`).
pub(crate) fn sm_error<E, R>(name: &str, op: &str, e: SdkError<E, R>) -> SecretError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match e.code() {
        Some("ResourceNotFoundException") => SecretError::NotFound {
            name: name.to_owned(),
            hint: "create it in Secrets Manager, or check the connector's secret name".into(),
        },
        Some("AccessDeniedException") => SecretError::Denied {
            name: name.to_owned(),
            detail: "the function's role may not use this secret; check its IAM policy".into(),
        },
        Some(code) => SecretError::Backend(format!(
            "Secrets Manager {op} failed: {code}: {}",
            e.message().unwrap_or("")
        )),
        None => SecretError::Backend(format!(
            "Secrets Manager {op} failed: the service did not answer; check AWS_ENDPOINT_URL_SECRETS_MANAGER or the network"
        )),
    }
}

/// Secrets Manager answers InvalidRequestException for a secret scheduled for
/// deletion.
fn marked_deleted<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.code() == Some("InvalidRequestException")
        && e.message().is_some_and(|m| m.contains("marked deleted"))
}

#[async_trait]
impl SecretStore for SecretsManagerStore {
    async fn get(
        &self,
        name: &SecretRef,
        stage: Stage,
    ) -> Result<Option<SecretValue>, SecretError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(name.as_str())
            .version_stage(stage.label())
            .send()
            .await;
        match out {
            Ok(v) => Ok(v.secret_string.map(SecretValue::new)),
            // The secret, or that stage of it, does not exist (or the secret
            // is scheduled for deletion).
            Err(e) if e.code() == Some("ResourceNotFoundException") || marked_deleted(&e) => {
                Ok(None)
            }
            Err(e) => Err(sm_error(name.as_str(), "GetSecretValue", e)),
        }
    }

    async fn put(&self, name: &SecretRef, value: SecretValue) -> Result<(), SecretError> {
        // A secret deleted within its recovery window is restored first
        // (Secrets Manager refuses new versions of it, and its name).
        match self
            .client
            .describe_secret()
            .secret_id(name.as_str())
            .send()
            .await
        {
            Ok(d) if d.deleted_date.is_some() => {
                self.client
                    .restore_secret()
                    .secret_id(name.as_str())
                    .send()
                    .await
                    .map_err(|e| sm_error(name.as_str(), "RestoreSecret", e))?;
            }
            Ok(_) => {}
            Err(e) if e.code() == Some("ResourceNotFoundException") => {
                return self
                    .client
                    .create_secret()
                    .name(name.as_str())
                    .secret_string(value.expose())
                    .description("dirsync connector secret")
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| sm_error(name.as_str(), "CreateSecret", e));
            }
            Err(e) => return Err(sm_error(name.as_str(), "DescribeSecret", e)),
        }
        self.client
            .put_secret_value()
            .secret_id(name.as_str())
            .secret_string(value.expose())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sm_error(name.as_str(), "PutSecretValue", e))
    }

    async fn get_version(
        &self,
        name: &SecretRef,
        version: &str,
    ) -> Result<Option<SecretValue>, SecretError> {
        match self
            .client
            .get_secret_value()
            .secret_id(name.as_str())
            .version_id(version)
            .send()
            .await
        {
            Ok(v) => Ok(v.secret_string.map(SecretValue::new)),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(sm_error(name.as_str(), "GetSecretValue", e)),
        }
    }

    async fn version_stages(
        &self,
        name: &SecretRef,
    ) -> Result<Vec<(String, Vec<Stage>)>, SecretError> {
        let d = self
            .client
            .describe_secret()
            .secret_id(name.as_str())
            .send()
            .await
            .map_err(|e| sm_error(name.as_str(), "DescribeSecret", e))?;
        Ok(d.version_ids_to_stages
            .unwrap_or_default()
            .into_iter()
            .map(|(id, labels)| {
                let stages = labels
                    .iter()
                    .filter_map(|l| {
                        [Stage::Current, Stage::Previous, Stage::Pending]
                            .into_iter()
                            .find(|s| s.label() == l)
                    })
                    .collect();
                (id, stages)
            })
            .collect())
    }

    async fn put_pending(
        &self,
        name: &SecretRef,
        version: &str,
        value: SecretValue,
    ) -> Result<(), SecretError> {
        self.client
            .put_secret_value()
            .secret_id(name.as_str())
            .client_request_token(version)
            .secret_string(value.expose())
            .version_stages(Stage::Pending.label())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sm_error(name.as_str(), "PutSecretValue", e))
    }

    async fn promote(&self, name: &SecretRef, version: &str) -> Result<(), SecretError> {
        let stages = self.version_stages(name).await?;
        let current = stages
            .iter()
            .find(|(_, s)| s.contains(&Stage::Current))
            .map(|(id, _)| id.clone());
        if current.as_deref() == Some(version) {
            return Ok(());
        }
        self.client
            .update_secret_version_stage()
            .secret_id(name.as_str())
            .version_stage(Stage::Current.label())
            .move_to_version_id(version)
            .set_remove_from_version_id(current)
            .send()
            .await
            .map_err(|e| sm_error(name.as_str(), "UpdateSecretVersionStage", e))?;
        self.client
            .update_secret_version_stage()
            .secret_id(name.as_str())
            .version_stage(Stage::Pending.label())
            .remove_from_version_id(version)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sm_error(name.as_str(), "UpdateSecretVersionStage", e))
    }

    async fn delete(&self, name: &SecretRef) -> Result<(), SecretError> {
        match self
            .client
            .delete_secret()
            .secret_id(name.as_str())
            .recovery_window_in_days(self.recovery_days)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ResourceNotFoundException") || marked_deleted(&e) => Ok(()),
            Err(e) => Err(sm_error(name.as_str(), "DeleteSecret", e)),
        }
    }
}
