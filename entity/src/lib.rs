//! sea-orm entities: plain data, no behaviour. Business rules live in `pymap::service`.

pub mod audit_event;
pub mod user;

pub mod prelude {
    pub use super::audit_event::Entity as AuditEvent;
    pub use super::user::Entity as User;
}
