//! sea-orm entities: plain data, no behaviour. Business rules live in `pymap::service`.

pub mod api_token;
pub mod audit_event;
pub mod job;
pub mod task;
pub mod user;

pub mod prelude {
    pub use super::api_token::Entity as ApiToken;
    pub use super::audit_event::Entity as AuditEvent;
    pub use super::job::Entity as Job;
    pub use super::task::Entity as Task;
    pub use super::user::Entity as User;
}
