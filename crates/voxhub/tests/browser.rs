//! A real-browser test: headless Chromium (Debian's `chromium` and `chromium-driver`)
//! drives the voxhub web UI. An admin logs in, creates a class and an invite code; a
//! student registers with that code in a second browser session; the admin then sees the
//! student on the class page.
//!
//! Where chromedriver is missing the test says so loudly and skips, except under CI
//! (`CI` set), where a missing browser is a failure.

mod common;

use common::KillOnDrop;
use common::chromium::{browser, fill, screenshot, set_value, start_chromedriver, submit};
use fantoccini::Locator;
use std::time::Duration;

const ADMIN_PASSWORD: &str = "browser-test-admin-password";

fn start_voxhub(data_dir: &std::path::Path) -> (KillOnDrop, String) {
    common::serve(data_dir, ADMIN_PASSWORD, &[])
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_invites_a_student_who_registers_and_appears_on_the_class_page() {
    if !common::chromium::available("browser test") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (_server, url) = start_voxhub(&work.path().join("data"));
    let (_driver, port) = start_chromedriver();
    let admin = browser(port, &work.path().join("admin-profile")).await;
    let student = browser(port, &work.path().join("student-profile")).await;

    let result = async {
        // The admin logs in.
        admin.goto(&format!("{url}/classes")).await.unwrap();
        assert!(
            admin
                .current_url()
                .await
                .unwrap()
                .path()
                .starts_with("/login"),
            "signed-out visitors are sent to the login page"
        );
        fill(&admin, "username", "admin").await;
        fill(&admin, "password", ADMIN_PASSWORD).await;
        submit(&admin, "form[action='/login']", "#create-class").await;
        assert_eq!(
            admin.current_url().await.unwrap().path(),
            "/classes",
            "login returns to the page asked for"
        );

        // Creates a class.
        fill(&admin, "class_name", "Deep Learning for Medical Imaging").await;
        set_value(&admin, "starts_on", "2026-09-01").await;
        set_value(&admin, "ends_on", "2027-01-31").await;
        fill(&admin, "description", "Weekly labs on CT segmentation.").await;
        submit(&admin, "#create-class", "#class-name").await;
        let class_url = admin.current_url().await.unwrap();
        assert!(
            class_url.path().starts_with("/classes/"),
            "lands on the new class page: {class_url}"
        );
        let heading = admin
            .find(Locator::Id("class-name"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(heading, "Deep Learning for Medical Imaging");

        // Creates an invite code for 60 students.
        submit(&admin, "#create-invite", "#invites .invite-code").await;
        let code = admin
            .find(Locator::Css("#invites .invite-code"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(code.len(), 14, "an invite code like ABCD-EFGH-JKMN: {code}");
        screenshot(&admin, "class-with-invite").await;

        // A student registers with that code in a separate browser session.
        student.goto(&format!("{url}/register")).await.unwrap();
        fill(&student, "invite_code", &code.to_lowercase()).await;
        fill(&student, "display_name", "Maria Gonzalez").await;
        fill(&student, "reg_username", "maria.g").await;
        fill(&student, "reg_password", "stethoscope-2026").await;
        fill(&student, "reg_password_again", "stethoscope-2026").await;
        screenshot(&student, "register").await;
        submit(&student, "form[action='/register']", ".notice.ok").await;
        let landed = student.current_url().await.unwrap();
        assert_eq!(
            landed.path(),
            class_url.path(),
            "the student lands on their class"
        );
        let welcome = student
            .find(Locator::Css(".notice.ok"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(welcome.contains("Welcome"), "{welcome}");
        let teachers_only = student.find_all(Locator::Css("#invites")).await.unwrap();
        assert!(teachers_only.is_empty(), "students do not see invite codes");
        screenshot(&student, "student-class").await;

        // The student submits a job from the form, and its output appears on its page.
        student.goto(&format!("{url}/jobs/new")).await.unwrap();
        fill(
            &student,
            "command",
            "sh -c 'echo hello from the queue > greeting.txt; cat greeting.txt'",
        )
        .await;
        fill(&student, "job_name", "first job").await;
        submit(&student, "#job-form", "#workload-name").await;
        let job_url = student.current_url().await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            student.goto(job_url.as_str()).await.unwrap();
            let heading = student
                .find(Locator::Id("workload-name"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if heading.contains("Succeeded") {
                break;
            }
            assert!(!heading.contains("Failed"), "the job failed: {heading}");
            assert!(
                std::time::Instant::now() < deadline,
                "the job did not finish: {heading}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        screenshot(&student, "job-done").await;
        student
            .goto(&format!(
                "{}/log",
                job_url.as_str().split('?').next().unwrap()
            ))
            .await
            .unwrap();
        let output = student
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(output.contains("hello from the queue"), "{output}");
        // The file it wrote is in the workspace, listed and downloadable.
        student.goto(&format!("{url}/workspace")).await.unwrap();
        let files = student
            .find(Locator::Id("files"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(files.contains("greeting.txt"), "{files}");
        screenshot(&student, "workspace").await;

        // The admin sees the student on the class page, with the code they used.
        admin.refresh().await.unwrap();
        let members = admin
            .find(Locator::Id("members"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(members.contains("maria.g"), "{members}");
        assert!(members.contains("Maria Gonzalez"), "{members}");
        assert!(
            members.contains(&code),
            "the class page shows which code the student joined with: {members}"
        );
        screenshot(&admin, "class-with-student").await;

        // The admin finds the registration in the audit log, filtered, and checks the chain.
        admin
            .goto(&format!("{url}/audit?action=auth.register"))
            .await
            .unwrap();
        let log = admin
            .find(Locator::Id("audit"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            log.contains("maria.g") && log.contains("auth.register"),
            "{log}"
        );
        assert!(
            !log.contains("class.create"),
            "the filter narrows the list: {log}"
        );
        admin
            .find(Locator::Css("button[name=verify]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        admin
            .wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::Id("verify-result"))
            .await
            .unwrap();
        let verdict = admin
            .find(Locator::Id("verify-result"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(verdict.contains("intact"), "{verdict}");
        screenshot(&admin, "audit-log").await;
    }
    .await;
    admin.close().await.ok();
    student.close().await.ok();
    result
}
