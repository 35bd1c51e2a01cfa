//! The `reader` service alone: `/o`, `/dashboard` (and health, metrics). Stateless: run as
//! many as you like on one Redis (`REDIS_URL` or `REDIS_CLUSTER_URLS`, required).

use tally_service::{server, split_service, Registry};

/// Every Tally binary allocates with mimalloc: the write path makes many small,
/// short-lived allocations (field names, keys, JSON), and glibc's malloc/free took about
/// a fifth of the CPU in the profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (cfg, shared) = split_service()?;
    actix_web::rt::System::new().block_on(async move {
        let data = actix_web::web::Data::new(tally_reader::Reader {
            shared: shared.clone(),
        });
        let (addr, srv) = server(&cfg, shared, Registry::default(), move |c| {
            tally_reader::configure(c, data.clone())
        })?;
        tracing::info!(%addr, "reader listening");
        srv.await?;
        Ok(())
    })
}
