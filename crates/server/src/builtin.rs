//! The features Salon ships, registered on a new server: the modules about the server and its
//! accounts, instant messaging and the XEPs on its paths, the archive writer, and the services
//! (multi-user chat, HTTP upload) on their own domains, and federation. The one place that knows them all; the
//! core below it knows none (docs/ARCHITECTURE.md, "Layers").

use crate::config::Config;
use crate::registry::Registry;
use crate::server::Server;
use crate::storage::Storage;
use crate::{archive, component, im, modules, muc, pep, s2s, upload};
use std::sync::Arc;

/// A server with every built-in module and the services its configuration enables.
pub fn build(config: Config, storage: Arc<dyn Storage>) -> anyhow::Result<Arc<Server>> {
    let mut registry = Registry::default();
    modules::register_all(&mut registry, &config);
    im::register_all(&mut registry, &config);
    archive::register(&mut registry);
    pep::register(&mut registry);
    let muc = match config.muc.clone() {
        Some(settings) => {
            let visitors = muc::visitor::VisitorSecrets::load_or_create(&config.data_dir)?;
            Some(muc::MucService::new(settings, visitors))
        }
        None => None,
    };
    if let Some(muc) = &muc {
        muc::register(&mut registry, muc.clone());
    }
    let upload = match &config.upload {
        Some(settings) => Some(upload::UploadService::new(
            settings.clone(),
            &config,
            storage.clone(),
        )?),
        None => None,
    };
    if let Some(upload) = &upload {
        upload::register(&mut registry, upload.clone());
    }
    let server = Server::new(config, storage, registry)?;
    if let Some(muc) = muc {
        server
            .router
            .register_service(&muc.settings.domain, muc.clone());
        server.metrics.count_rooms_with(muc.clone());
        server.extensions.insert_arc(muc);
    }
    if let Some(upload) = upload {
        server
            .router
            .register_service(&upload.settings.domain, upload.clone());
        server.extensions.insert_arc(upload);
    }
    component::install(&server);
    // Federation last: it checks `from` domains against the services registered above.
    s2s::install(&server)?;
    Ok(server)
}
