//! Who may do what. Every access rule of the platform is written here, as plain functions
//! of the caller and the caller's relation to the thing asked for, so each rule has a unit
//! test and the HTTP layer only asks.
//!
//! Admin power is handed out as an [`AdminPower`] value that only [`require_admin`] can
//! make, so code that needs admin rights takes one as an argument and cannot be reached
//! without the check.

use crate::role::{ClassRole, Role};

/// The person making a request, as far as permissions care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub user_id: i64,
    pub role: Role,
}

/// Why something was refused, in words for the person who tried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

/// Proof that the caller is an admin. Only [`require_admin`] makes one.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct AdminPower {
    pub admin_id: i64,
}

pub fn require_admin(actor: &Actor, what: &str) -> Result<AdminPower, Denied> {
    if actor.role == Role::Admin {
        Ok(AdminPower {
            admin_id: actor.user_id,
        })
    } else {
        Err(Denied(format!(
            "only an admin can {what}; ask your platform administrator"
        )))
    }
}

/// Admins and teachers create classes; students cannot.
pub fn can_create_class(actor: &Actor) -> Result<(), Denied> {
    match actor.role {
        Role::Admin | Role::Teacher => Ok(()),
        Role::Student => Err(Denied(
            "students cannot create classes; ask a teacher to create one and invite you".into(),
        )),
    }
}

/// How much of a class someone may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassView {
    /// Everything: members, who joined with which code, invite codes. Admins and the class's teachers.
    Full,
    /// The class itself and its teachers. Students of the class.
    Member,
}

/// `membership` is the caller's role in the class, or `None` when they are not in it.
pub fn can_view_class(actor: &Actor, membership: Option<ClassRole>) -> Result<ClassView, Denied> {
    match (actor.role, membership) {
        (Role::Admin, _) | (_, Some(ClassRole::Teacher)) => Ok(ClassView::Full),
        (_, Some(ClassRole::Student)) => Ok(ClassView::Member),
        (_, None) => Err(Denied(
            "you are not a member of this class; ask its teacher for an invite code".into(),
        )),
    }
}

/// Changing a class, its members and its invite codes: admins and the class's own teachers.
pub fn can_manage_class(actor: &Actor, membership: Option<ClassRole>) -> Result<(), Denied> {
    match (actor.role, membership) {
        (Role::Admin, _) | (_, Some(ClassRole::Teacher)) => Ok(()),
        (_, Some(ClassRole::Student)) => Err(Denied(
            "only the teachers of this class can change it, its members or its invite codes".into(),
        )),
        (_, None) => Err(Denied(
            "you are not a teacher of this class, so you cannot change it".into(),
        )),
    }
}

/// Adding someone to a class as a teacher gives them control of it, so a teacher may only
/// add a teacher who is already a teacher or admin on the platform; students can never be
/// made class teachers by a teacher.
pub fn can_grant_class_role(
    actor: &Actor,
    member_platform_role: Role,
    class_role: ClassRole,
) -> Result<(), Denied> {
    if class_role == ClassRole::Teacher
        && member_platform_role == Role::Student
        && actor.role != Role::Admin
    {
        return Err(Denied(
            "a student cannot be made a teacher of a class; an admin can change their platform role first".into(),
        ));
    }
    Ok(())
}

/// API tokens and sessions: each person manages their own; admins manage anyone's.
pub fn can_manage_tokens_of(actor: &Actor, owner_id: i64) -> Result<(), Denied> {
    if actor.user_id == owner_id || actor.role == Role::Admin {
        Ok(())
    } else {
        Err(Denied("you can only see and revoke your own tokens".into()))
    }
}

/// A user's account details: the person themself and admins.
pub fn can_view_user(actor: &Actor, user_id: i64) -> Result<(), Denied> {
    if actor.user_id == user_id || actor.role == Role::Admin {
        Ok(())
    } else {
        Err(Denied("you can only see your own account".into()))
    }
}

/// Invite codes are made by those who manage the class. A code for the teacher role makes
/// platform teachers of the people who use it, so only admins and platform teachers may
/// create one (a student appointed to teach a class may invite students only).
pub fn can_create_invite(
    actor: &Actor,
    membership: Option<ClassRole>,
    invite_role: ClassRole,
) -> Result<(), Denied> {
    can_manage_class(actor, membership)?;
    if invite_role == ClassRole::Teacher && actor.role == Role::Student {
        return Err(Denied(
            "only admins and teachers can create invite codes for teachers; create a code for students instead".into(),
        ));
    }
    Ok(())
}

/// Seeing a workload (its state, logs and details): its owner, admins, and the teachers of
/// the class it runs for.
pub fn can_view_workload(
    actor: &Actor,
    owner_id: i64,
    actor_teaches_its_class: bool,
) -> Result<(), Denied> {
    if actor.user_id == owner_id || actor.role == Role::Admin || actor_teaches_its_class {
        Ok(())
    } else {
        Err(Denied(
            "this workload is not yours; you can only see your own workloads".into(),
        ))
    }
}

/// Stopping or cancelling a workload: its owner and admins.
pub fn can_stop_workload(actor: &Actor, owner_id: i64) -> Result<(), Denied> {
    if actor.user_id == owner_id || actor.role == Role::Admin {
        Ok(())
    } else {
        Err(Denied(
            "only the owner of a workload or an admin can stop it".into(),
        ))
    }
}

/// Opening an interactive instance through the proxy, and a workspace: the owner and admins.
pub fn can_enter_instance(actor: &Actor, owner_id: i64) -> Result<(), Denied> {
    if actor.user_id == owner_id || actor.role == Role::Admin {
        Ok(())
    } else {
        Err(Denied(
            "this environment belongs to someone else; open your own from the queue page".into(),
        ))
    }
}

/// Reading and writing a workspace: its owner and admins.
pub fn can_use_workspace(actor: &Actor, owner_id: i64) -> Result<(), Denied> {
    if actor.user_id == owner_id || actor.role == Role::Admin {
        Ok(())
    } else {
        Err(Denied("you can only open your own workspace".into()))
    }
}

/// Seeing a dataset (its index, images, volumes, DICOMweb): its owner, admins, and every
/// member of the class it is shared with. `membership` is the caller's role in that class,
/// `None` when the dataset is private or the caller is not in the class.
pub fn can_view_dataset(
    actor: &Actor,
    owner_id: i64,
    membership: Option<ClassRole>,
) -> Result<(), Denied> {
    if actor.user_id == owner_id || actor.role == Role::Admin || membership.is_some() {
        Ok(())
    } else {
        Err(Denied(
            "this dataset is not shared with you; ask its owner or your teacher to share it with your class".into(),
        ))
    }
}

/// Uploading into a dataset, renaming, sharing or deleting it: its owner, admins, and the
/// teachers of the class it is shared with (co-teachers publish together). Students of that
/// class read only.
pub fn can_change_dataset(
    actor: &Actor,
    owner_id: i64,
    membership: Option<ClassRole>,
) -> Result<(), Denied> {
    if actor.user_id == owner_id
        || actor.role == Role::Admin
        || membership == Some(ClassRole::Teacher)
    {
        Ok(())
    } else if membership == Some(ClassRole::Student) {
        Err(Denied(
            "this dataset is shared with your class read-only; only its teachers can change it"
                .into(),
        ))
    } else {
        Err(Denied(
            "this dataset is not yours, so you cannot change it".into(),
        ))
    }
}

/// Sharing a dataset with a class publishes it to every student of the class, so only the
/// class's teachers and admins may do it. `membership` is the caller's role in the target class.
pub fn can_share_dataset_with(actor: &Actor, membership: Option<ClassRole>) -> Result<(), Denied> {
    match (actor.role, membership) {
        (Role::Admin, _) | (_, Some(ClassRole::Teacher)) => Ok(()),
        _ => Err(Denied(
            "only the teachers of a class can share datasets with it; keep the dataset private or ask a teacher".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: Actor = Actor {
        user_id: 1,
        role: Role::Admin,
    };
    const TEACHER: Actor = Actor {
        user_id: 2,
        role: Role::Teacher,
    };
    const STUDENT: Actor = Actor {
        user_id: 3,
        role: Role::Student,
    };

    #[test]
    fn only_admins_get_admin_power() {
        assert!(require_admin(&ADMIN, "x").is_ok());
        assert!(
            require_admin(&TEACHER, "manage users")
                .unwrap_err()
                .0
                .contains("only an admin")
        );
        assert!(require_admin(&STUDENT, "x").is_err());
    }

    #[test]
    fn students_cannot_create_classes() {
        assert!(can_create_class(&ADMIN).is_ok());
        assert!(can_create_class(&TEACHER).is_ok());
        assert!(can_create_class(&STUDENT).is_err());
    }

    #[test]
    fn a_student_cannot_read_a_class_they_are_not_in() {
        assert!(can_view_class(&STUDENT, None).is_err());
        assert_eq!(
            can_view_class(&STUDENT, Some(ClassRole::Student)),
            Ok(ClassView::Member)
        );
    }

    #[test]
    fn a_teacher_sees_only_their_own_classes_in_full() {
        assert!(can_view_class(&TEACHER, None).is_err());
        assert_eq!(
            can_view_class(&TEACHER, Some(ClassRole::Teacher)),
            Ok(ClassView::Full)
        );
        assert_eq!(can_view_class(&ADMIN, None), Ok(ClassView::Full));
    }

    #[test]
    fn a_teacher_cannot_change_a_class_that_is_not_theirs() {
        assert!(can_manage_class(&TEACHER, None).is_err());
        assert!(can_manage_class(&TEACHER, Some(ClassRole::Student)).is_err());
        assert!(can_manage_class(&TEACHER, Some(ClassRole::Teacher)).is_ok());
        assert!(can_manage_class(&ADMIN, None).is_ok());
    }

    #[test]
    fn a_student_of_a_class_cannot_change_it_or_create_invites() {
        assert!(can_manage_class(&STUDENT, Some(ClassRole::Student)).is_err());
        assert!(can_create_invite(&STUDENT, Some(ClassRole::Student), ClassRole::Student).is_err());
    }

    #[test]
    fn a_student_who_teaches_a_class_cannot_invite_teachers() {
        assert!(can_create_invite(&STUDENT, Some(ClassRole::Teacher), ClassRole::Student).is_ok());
        assert!(can_create_invite(&STUDENT, Some(ClassRole::Teacher), ClassRole::Teacher).is_err());
        assert!(can_create_invite(&TEACHER, Some(ClassRole::Teacher), ClassRole::Teacher).is_ok());
        assert!(can_create_invite(&ADMIN, None, ClassRole::Teacher).is_ok());
    }

    #[test]
    fn a_teacher_cannot_make_a_student_a_class_teacher() {
        assert!(can_grant_class_role(&TEACHER, Role::Student, ClassRole::Teacher).is_err());
        assert!(can_grant_class_role(&TEACHER, Role::Teacher, ClassRole::Teacher).is_ok());
        assert!(can_grant_class_role(&TEACHER, Role::Student, ClassRole::Student).is_ok());
        assert!(can_grant_class_role(&ADMIN, Role::Student, ClassRole::Teacher).is_ok());
    }

    #[test]
    fn nobody_but_the_owner_or_an_admin_manages_tokens() {
        assert!(can_manage_tokens_of(&STUDENT, 3).is_ok());
        assert!(can_manage_tokens_of(&STUDENT, 2).is_err());
        assert!(can_manage_tokens_of(&TEACHER, 3).is_err());
        assert!(can_manage_tokens_of(&ADMIN, 3).is_ok());
    }

    #[test]
    fn a_student_cannot_see_stop_or_enter_another_students_workload() {
        assert!(can_view_workload(&STUDENT, 4, false).is_err());
        assert!(can_stop_workload(&STUDENT, 4).is_err());
        assert!(can_enter_instance(&STUDENT, 4).is_err());
        assert!(can_use_workspace(&STUDENT, 4).is_err());
        assert!(can_view_workload(&STUDENT, 3, false).is_ok());
        assert!(can_enter_instance(&STUDENT, 3).is_ok());
    }

    #[test]
    fn teachers_see_their_class_workloads_but_cannot_stop_or_enter_them() {
        assert!(can_view_workload(&TEACHER, 3, true).is_ok());
        assert!(can_view_workload(&TEACHER, 3, false).is_err());
        assert!(can_stop_workload(&TEACHER, 3).is_err());
        assert!(can_enter_instance(&TEACHER, 3).is_err());
        assert!(can_stop_workload(&ADMIN, 3).is_ok());
    }

    #[test]
    fn people_see_only_their_own_account_unless_admin() {
        assert!(can_view_user(&STUDENT, 3).is_ok());
        assert!(can_view_user(&STUDENT, 2).is_err());
        assert!(can_view_user(&TEACHER, 3).is_err());
        assert!(can_view_user(&ADMIN, 2).is_ok());
    }
    #[test]
    fn datasets_are_seen_by_owner_admin_and_the_shared_class_only() {
        assert!(can_view_dataset(&STUDENT, 3, None).is_ok());
        assert!(can_view_dataset(&ADMIN, 3, None).is_ok());
        assert!(can_view_dataset(&STUDENT, 2, Some(ClassRole::Student)).is_ok());
        let denied = can_view_dataset(&STUDENT, 2, None).unwrap_err();
        assert!(denied.0.contains("not shared with you"));
        assert!(can_view_dataset(&TEACHER, 3, None).is_err());
    }

    #[test]
    fn students_of_the_class_read_shared_datasets_only() {
        assert!(can_change_dataset(&TEACHER, 2, None).is_ok());
        assert!(can_change_dataset(&ADMIN, 2, None).is_ok());
        assert!(can_change_dataset(&TEACHER, 9, Some(ClassRole::Teacher)).is_ok());
        let denied = can_change_dataset(&STUDENT, 2, Some(ClassRole::Student)).unwrap_err();
        assert!(denied.0.contains("read-only"));
        assert!(can_change_dataset(&STUDENT, 2, None).is_err());
    }

    #[test]
    fn only_class_teachers_share_datasets_with_a_class() {
        assert!(can_share_dataset_with(&ADMIN, None).is_ok());
        assert!(can_share_dataset_with(&TEACHER, Some(ClassRole::Teacher)).is_ok());
        assert!(can_share_dataset_with(&TEACHER, None).is_err());
        assert!(can_share_dataset_with(&STUDENT, Some(ClassRole::Student)).is_err());
        // A student appointed to teach a class may publish to it.
        assert!(can_share_dataset_with(&STUDENT, Some(ClassRole::Teacher)).is_ok());
    }
}
