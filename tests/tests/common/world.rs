//! A whole deployment on the local services: DynamoDB Local, the SQS and
//! Secrets Manager emulator, the Entra simulator, and an [`App`] over them.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsMessage;
use chrono::Utc;
use dirsync_entra_sim::{CONSENT_ROLES, EntraSim, GenSpec, MultiTenantApp, TenantSpec};
use dirsync_shared::app::window::WindowSpans;
use dirsync_shared::app::{App, AppSettings};
use dirsync_shared::auth::{AppCertificate, AssertionAlg, KeyBits};
use dirsync_shared::domain::*;
use dirsync_shared::engine::EngineSettings;
use dirsync_shared::queue::{Job, SqsQueue};
use dirsync_shared::secrets::SecretStore;
use dirsync_shared::source::graph::{EntraApp, GraphDeps};
use dirsync_shared::source::retry::RetryPolicy;
use serde_json::json;
use uuid::Uuid;

use super::{Backend, Fixture, drain_queue, fixture_at, secrets_manager, sqs_client, sqs_queue};

/// The redirect URI registered on the simulated app.
/// The IAM principal the tests call the admin API as: a platform administrator.
pub const OPERATOR: &str = "arn:aws:iam::123456789012:user/operator";

pub const REDIRECT: &str = "https://dirsync.example/consent";

pub struct World {
    pub f: Fixture,
    pub sim: EntraSim,
    pub tenant: Uuid,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub app: App,
    pub client_id: Uuid,
    pub object_id: Uuid,
    /// The app's home tenant.
    pub home: Uuid,
    pub cert_secret: SecretRef,
    pub secrets: Arc<dirsync_shared::secrets::SecretsManagerStore>,
}

pub async fn world(users: u32) -> World {
    let f = fixture_at(Backend::Dynamo, Utc::now()).await;
    let sim = EntraSim::start().await.unwrap();
    let tenant = sim.add_tenant(TenantSpec {
        display_name: "Contoso".into(),
        verified_domains: vec!["contoso.com".into()],
        ..Default::default()
    });
    sim.generate_directory(tenant, GenSpec::sized(users, (users / 50).max(2), 11));
    let cert = AppCertificate::generate(
        "dirsync",
        Utc::now(),
        chrono::Duration::days(3),
        KeyBits::Rsa2048,
    )
    .unwrap();
    let (client_id, home) = (
        Uuid::new_v4(),
        sim.add_tenant(TenantSpec {
            display_name: "Platform".into(),
            verified_domains: vec!["platform.example".into()],
            ..Default::default()
        }),
    );
    let object_id = Uuid::new_v4();
    sim.register_multitenant_app(MultiTenantApp {
        client_id,
        object_id,
        home_tenant: home,
        redirect_uris: vec![REDIRECT.into()],
        certificates: vec![cert.der().to_vec()],
    });
    sim.grant_admin_consent(tenant, client_id, &CONSENT_ROLES);
    // The app manages its own keys in its home tenant (rotation).
    sim.grant_admin_consent(home, client_id, &["Application.ReadWrite.OwnedBy"]);
    let secrets = Arc::new(secrets_manager());
    let cert_secret = format!("dirsync/test/app-cert-{}", Uuid::new_v4().simple());
    secrets
        .put(&cert_secret.parse().unwrap(), cert.to_secret())
        .await
        .unwrap();
    let sqs = sqs_client();
    let queue_url = sqs_queue(&sqs).await;
    let app = App::builder(
        f.store.clone(),
        Arc::new(SqsQueue::new(sqs.clone(), queue_url.clone())),
        secrets.clone(),
    )
    .entra_app(Some(EntraApp {
        client_id,
        certificate: cert_secret.parse().unwrap(),
        assertion: AssertionAlg::Ps256,
    }))
    .engine(EngineSettings {
        deadline_margin: Duration::ZERO,
        ..Default::default()
    })
    .retry(RetryPolicy::fast())
    .settings(AppSettings {
        window_spans: WindowSpans::NONE,
        secret_prefix: format!("dirsync-test-{}", Uuid::new_v4().simple()),
        consent_redirect_uri: Some(REDIRECT.into()),
        allow_custom_cloud: true,
        platform_admins: vec![OPERATOR.into()],
        ..Default::default()
    })
    .build();
    World {
        f,
        sim,
        tenant,
        sqs,
        queue_url,
        app,
        client_id,
        object_id,
        home,
        cert_secret: cert_secret.parse().unwrap(),
        secrets,
    }
}

/// Graph access as the tests' platform app (`None`: no app, for
/// deployments that never call Graph as the platform).
pub fn graph_deps(
    f: &Fixture,
    secrets: Arc<dyn SecretStore>,
    app: Option<EntraApp>,
) -> Arc<GraphDeps> {
    Arc::new(GraphDeps::new(
        secrets,
        f.clock.clone(),
        RetryPolicy::fast(),
        app,
    ))
}

impl World {
    pub async fn account(&self, id: &str, region: Region) {
        let a = Account::new(AccountId::new(id).unwrap(), id, region, Utc::now()).unwrap();
        self.f.store.create_account(&a).await.unwrap();
    }

    pub async fn consent_connector(
        &self,
        account: &str,
        id: &str,
        granted: bool,
        enabled: bool,
    ) -> Connector {
        let spec: ConnectorSpec = serde_json::from_value(json!({
            "id": id, "kind": "entra", "tenant": self.tenant.to_string(), "enabled": enabled,
            "acknowledge_disabled": true,
            "authority_url": self.sim.authority_url(), "graph_url": self.sim.graph_url(),
        }))
        .unwrap();
        let mut c = spec
            .validate(AccountId::new(account).unwrap(), Utc::now())
            .unwrap();
        if granted && let SourceConfig::EntraConsent { consent, .. } = &mut c.source {
            *consent = Consent::granted(self.tenant, Utc::now());
        }
        self.f.store.create_connector(&c).await.unwrap()
    }

    pub async fn jobs(&self) -> Vec<(Job, SqsMessage)> {
        drain_queue(&self.sqs, &self.queue_url)
            .await
            .into_iter()
            .map(|m| {
                let job: Job = serde_json::from_str(m.body.as_deref().unwrap()).unwrap();
                let mut msg = SqsMessage::default();
                msg.message_id = m.message_id.clone();
                msg.body = m.body.clone();
                msg.attributes
                    .insert("ApproximateReceiveCount".into(), "1".into());
                (job, msg)
            })
            .collect()
    }
}
