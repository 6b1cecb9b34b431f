//! Rolling updates (RollingInPlace, RollingRecreate) on the real control plane: children move to
//! the latest ControllerRevision one at a time, each waiting for its status checks, which the test
//! sets the way a child's own controller would (children are a CRD with a status subresource).

mod common;

use std::collections::BTreeMap;

use common::*;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kubelambda::api::ControllerRevision;
use kubelambda::engine::children::ApplyStrategy;
use serde_json::{Value, json};

/// `spec.count` children named `<parent>-<i>`, each with the parent's `spec.version`.
const HOOK: &str = r#"
function(request) {
  local parent = request.parent,
  children: [{
    apiVersion: 'test.kubelambda.io/v1', kind: 'RollChild',
    metadata: {
      name: parent.metadata.name + '-' + i,
      // Without generateSelector, children must match the parent's selector.
      labels: std.get(std.get(parent.spec, 'selector', {}), 'matchLabels', {}),
    },
    spec: { version: parent.spec.version },
  } for i in std.range(0, parent.spec.count - 1)],
  status: { children: std.length(request.children['RollChild.test.kubelambda.io/v1']) },
}
"#;

fn child_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "rollchildren.test.kubelambda.io"},
        "spec": {
            "group": "test.kubelambda.io",
            "scope": "Namespaced",
            "names": {"kind": "RollChild", "plural": "rollchildren", "singular": "rollchild"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
            }]
        }
    })
}

fn child_ar() -> ApiResource {
    ApiResource {
        group: "test.kubelambda.io".into(),
        version: "v1".into(),
        api_version: "test.kubelambda.io/v1".into(),
        kind: "RollChild".into(),
        plural: "rollchildren".into(),
    }
}

struct Rollout {
    h: Harness,
    parent: String,
    count: usize,
}

impl Rollout {
    /// A harness with the child CRD and a controller rolling RollChildren with `method`, waiting
    /// for `Ready=True`.
    /// `parent_resource` is merged into the controller's `parentResource`.
    async fn new(
        test: &str,
        strategy: ApplyStrategy,
        method: &str,
        parent_resource: Value,
    ) -> Self {
        Self::with_selector(test, strategy, method, parent_resource, true).await
    }

    async fn with_selector(
        test: &str,
        strategy: ApplyStrategy,
        method: &str,
        parent_resource: Value,
        generate_selector: bool,
    ) -> Self {
        let h = Harness::with_strategy(test, strategy).await;
        create_crd(&h.client, child_crd()).await;
        let mut parent = json!({
            "apiVersion": "test.kubelambda.io/v1",
            "resource": "testparents",
            "labelSelector": {"matchLabels": {"kubelambda-test": h.label}},
        });
        if let (Some(parent), Some(extra)) = (parent.as_object_mut(), parent_resource.as_object()) {
            parent.extend(extra.clone());
        }
        let cc = json!({
            "apiVersion": "metacontroller.k8s.io/v1alpha1",
            "kind": "CompositeController",
            "metadata": {"name": format!("{test}-{}", h.label), "labels": {"kubelambda-test": h.label}},
            "spec": {
                "generateSelector": generate_selector,
                "resyncPeriodSeconds": 1,
                "parentResource": parent,
                "childResources": [{
                    "apiVersion": "test.kubelambda.io/v1", "resource": "rollchildren",
                    "updateStrategy": {"method": method, "statusChecks": {"conditions": [{"type": "Ready", "status": "True"}]}},
                }],
                "hooks": {"sync": {"jsonnet": {"source": HOOK}}},
            },
        });
        create_cc(&h.client, cc).await;
        Self {
            h,
            parent: "roll".into(),
            count: 3,
        }
    }

    fn children(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.h.client.clone(), &self.h.ns, &child_ar())
    }

    fn name(&self, i: usize) -> String {
        format!("{}-{i}", self.parent)
    }

    fn revisions(&self) -> Api<ControllerRevision> {
        Api::namespaced(self.h.client.clone(), &self.h.ns)
    }

    /// The children by name.
    async fn observed(&self) -> Option<BTreeMap<String, DynamicObject>> {
        let list = self.children().list(&Default::default()).await.ok()?;
        Some(list.items.into_iter().map(|c| (c.name_any(), c)).collect())
    }

    /// Each child's `spec.version`, in order (`-` for a missing child).
    async fn versions(&self) -> Option<Vec<String>> {
        let observed = self.observed().await?;
        Some(
            (0..self.count)
                .map(|i| {
                    observed
                        .get(&self.name(i))
                        .and_then(|c| c.data.pointer("/spec/version")?.as_str())
                        .unwrap_or("-")
                        .to_owned()
                })
                .collect(),
        )
    }

    async fn wait_versions(&self, want: &[&str]) -> BTreeMap<String, DynamicObject> {
        let want: Vec<String> = want.iter().map(|v| (*v).to_owned()).collect();
        wait_until(&format!("children at versions {want:?}"), || {
            let want = want.clone();
            async move {
                (self.versions().await? == want).then_some(())?;
                self.observed().await
            }
        })
        .await
    }

    /// Sets a child's `Ready` condition and `observedGeneration`, as its controller would.
    async fn set_ready(&self, i: usize, ready: &str) {
        let name = self.name(i);
        let child = self.children().get(&name).await.expect("child");
        let status = json!({"status": {
            "observedGeneration": child.metadata.generation,
            "conditions": [{"type": "Ready", "status": ready}],
        }});
        self.children()
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("set child status");
    }

    /// The parent's `Updated` condition: (status, reason, message).
    async fn updated(&self) -> Option<(String, String, String)> {
        let parent = self.h.parents().get(&self.parent).await.ok()?;
        let cond = parent
            .data
            .pointer("/status/conditions")?
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Updated")?
            .clone();
        let s = |k: &str| cond[k].as_str().unwrap_or_default().to_owned();
        Some((s("status"), s("reason"), s("message")))
    }

    async fn wait_updated(&self, reason: &str, message: &str) {
        wait_until(
            &format!("parent condition Updated {reason}: {message:?}"),
            || async {
                let (_, r, m) = self.updated().await?;
                (r == reason && m == message).then_some(())
            },
        )
        .await
    }

    /// The parent's revisions: (name, children names).
    async fn revision_claims(&self) -> BTreeMap<String, Vec<String>> {
        let list = self
            .revisions()
            .list(&Default::default())
            .await
            .expect("list revisions");
        list.items
            .into_iter()
            .map(|r| {
                let names = r
                    .spec
                    .children
                    .iter()
                    .flat_map(|c| c.names.clone())
                    .collect();
                (r.name_any(), names)
            })
            .collect()
    }

    /// Waits until the engine has synced the parents `n` more times (the controller resyncs them
    /// every second): a rollout that should not move has had every chance to.
    async fn let_it_sync(&self, n: u64) {
        let metrics = self.h.engine().metrics.clone();
        let start = metrics.syncs();
        wait_until(&format!("{n} more syncs"), || {
            let metrics = metrics.clone();
            async move { (metrics.syncs() >= start + n).then_some(()) }
        })
        .await
    }

    fn writes(&self) -> u64 {
        self.h.engine().metrics.writes()
    }

    /// Creates the parent at `v1`, waits for the children and the first revision, and makes
    /// every child ready. Returns the first revision's name.
    async fn start_at_v1(&self) -> String {
        self.h
            .parent(&self.parent, json!({"version": "v1", "count": self.count}))
            .await;
        self.wait_versions(&vec!["v1"; self.count]).await;
        for i in 0..self.count {
            self.set_ready(i, "True").await;
        }
        let revisions = wait_until("one revision claiming every child", || async {
            let claims = self.revision_claims().await;
            (claims.len() == 1 && claims.values().all(|n| n.len() == self.count)).then_some(claims)
        })
        .await;
        let name = revisions.keys().next().expect("a revision").clone();
        self.wait_updated(
            "OnLatestRevision",
            &format!("latest ControllerRevision: {name}"),
        )
        .await;
        name
    }

    async fn set_version(&self, version: &str) {
        self.h
            .patch_parent(&self.parent, json!({"version": version}))
            .await;
    }
}

fn not_observed(i: usize) -> String {
    format!(
        "child RollChild roll-{i} with RollingInPlace update strategy hasn't observed latest spec"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_in_place_moves_one_child_at_a_time_each_waiting_for_its_checks() {
    let r = Rollout::new(
        "rolling-inplace",
        ApplyStrategy::ServerSide {
            field_manager: "kubelambda".into(),
        },
        "RollingInPlace",
        json!({}),
    )
    .await;
    let first = r.start_at_v1().await;
    let parent_uid = r.h.parents().get(&r.parent).await.expect("parent").uid();
    let revision = r.revisions().get(&first).await.expect("revision");
    assert_eq!(
        revision.labels().get("controller-uid"),
        parent_uid.as_ref(),
        "generateSelector: revisions carry controller-uid"
    );
    assert_eq!(
        owner_uid(&revision),
        parent_uid,
        "revisions are controlled by the parent"
    );
    let uids: Vec<_> = {
        let observed = r.observed().await.expect("children");
        (0..3).map(|i| observed[&r.name(i)].uid()).collect()
    };

    let writes_before = r.writes();
    r.set_version("v2").await;
    let mut expected = vec!["v1"; 3];
    for i in 0..2 {
        expected[i] = "v2";
        r.wait_versions(&expected).await;
        r.wait_updated("RolloutWaiting", &not_observed(i)).await;
        // The rollout has every chance to move on, and does not, and waiting costs no writes
        // (counted from one sync after the condition showed: a write of the step that set it
        // may still be on its way, e.g. the same status again over a cached parent that had
        // not caught up yet).
        r.let_it_sync(1).await;
        let writes = r.writes();
        r.let_it_sync(3).await;
        assert_eq!(
            r.versions().await.expect("versions"),
            expected,
            "child {i} has not observed its update: nothing else moves"
        );
        assert_eq!(r.writes(), writes, "a waiting rollout writes nothing");
        r.set_ready(i, "True").await;
    }
    // The last child moves: every child is on the latest revision.
    r.wait_versions(&["v2", "v2", "v2"]).await;
    // Two revisions during the rollout, then only the new one: the old claims no child.
    let claims = wait_until("only the latest revision left", || async {
        let claims = r.revision_claims().await;
        (claims.len() == 1 && !claims.contains_key(&first)).then_some(claims)
    })
    .await;
    let (latest, names) = claims.into_iter().next().expect("latest");
    assert_eq!(names, vec!["roll-0", "roll-1", "roll-2"]);
    r.wait_updated(
        "OnLatestRevision",
        &format!("latest ControllerRevision: {latest}"),
    )
    .await;
    let observed = r.observed().await.expect("children");
    let after: Vec<_> = (0..3).map(|i| observed[&r.name(i)].uid()).collect();
    assert_eq!(after, uids, "InPlace keeps every child");
    let writes = r.writes() - writes_before;
    println!("a rollout over 3 children: {writes} writes");
    // Per child: two revision updates, one child update, a status or two; plus the new and
    // the deleted revision.
    assert!(writes <= 30, "{writes} writes for 3 children");

    // Deleting the parent takes its revisions with it (garbage collector, through ownerRefs).
    r.h.parents()
        .delete(&r.parent, &DeleteParams::default())
        .await
        .expect("delete parent");
    wait_deleted(&r.revisions(), &latest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_check_stops_a_rolling_recreate_and_says_so() {
    // Dynamic apply: Metacontroller's own merge decides what is up to date.
    let r = Rollout::new(
        "rolling-stall",
        ApplyStrategy::Dynamic,
        "RollingRecreate",
        json!({}),
    )
    .await;
    r.start_at_v1().await;
    let old = r.observed().await.expect("children");
    r.set_version("v2").await;
    // roll-0 is deleted and re-created at v2, with no status yet.
    let observed = r.wait_versions(&["v2", "v1", "v1"]).await;
    assert_ne!(observed["roll-0"].uid(), old["roll-0"].uid(), "re-created");
    let missing =
        "child RollChild roll-0 failed status check: required condition type missing: \"Ready\"";
    r.wait_updated("RolloutWaiting", missing).await;
    assert_eq!(r.updated().await.expect("condition").0, "False");
    let note = r.h.warning(&r.parent, "rollout stopped").await;
    assert_eq!(note, format!("rollout stopped: {missing}"));

    // Its controller reports it not ready: still stopped, now saying why.
    r.set_ready(0, "False").await;
    let not_ready = "child RollChild roll-0 failed status check: \"Ready\" condition status is \"False\" (want \"True\")";
    r.wait_updated("RolloutWaiting", not_ready).await;
    r.h.warning(&r.parent, "condition status is \"False\"")
        .await;
    let writes = r.writes();
    r.let_it_sync(3).await;
    let now = r.observed().await.expect("children");
    for name in ["roll-1", "roll-2"] {
        assert_eq!(
            now[name].uid(),
            old[name].uid(),
            "{name} untouched while stopped"
        );
    }
    assert_eq!(r.writes(), writes, "a stopped rollout writes nothing");

    // Ready: the rollout goes on to the end.
    r.set_ready(0, "True").await;
    r.wait_versions(&["v2", "v2", "v1"]).await;
    r.wait_updated(
        "RolloutWaiting",
        "child RollChild roll-1 failed status check: required condition type missing: \"Ready\"",
    )
    .await;
    r.set_ready(1, "True").await;
    r.wait_versions(&["v2", "v2", "v2"]).await;
    wait_until("on the latest revision", || async {
        let (status, reason, _) = r.updated().await?;
        (status == "True" && reason == "OnLatestRevision").then_some(())
    })
    .await;
    let now = r.observed().await.expect("children");
    for name in ["roll-0", "roll-1", "roll-2"] {
        assert_ne!(now[name].uid(), old[name].uid(), "{name} re-created");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_returns_to_the_earlier_revision_without_a_new_one() {
    let r = Rollout::new(
        "rolling-back",
        ApplyStrategy::ServerSide {
            field_manager: "kubelambda".into(),
        },
        "RollingInPlace",
        json!({}),
    )
    .await;
    let first = r.start_at_v1().await;
    r.set_version("v2").await;
    r.wait_versions(&["v2", "v1", "v1"]).await;
    r.wait_updated("RolloutWaiting", &not_observed(0)).await;
    let during = r.revision_claims().await;
    assert_eq!(during.len(), 2, "{during:?}");
    assert_eq!(during[&first], vec!["roll-1", "roll-2"]);
    let second = during
        .keys()
        .find(|k| **k != first)
        .expect("the v2 revision")
        .clone();
    r.set_ready(0, "True").await;
    r.wait_versions(&["v2", "v2", "v1"]).await;
    r.wait_updated("RolloutWaiting", &not_observed(1)).await;

    // Back to v1: the first revision is the latest again; the moved children move back, one at
    // a time, and the v2 revision goes once it has none.
    r.set_version("v1").await;
    r.wait_versions(&["v1", "v2", "v1"]).await;
    r.wait_updated("RolloutWaiting", &not_observed(0)).await;
    let back = r.revision_claims().await;
    assert_eq!(
        back.keys().cloned().collect::<Vec<_>>(),
        {
            let mut names = vec![first.clone(), second.clone()];
            names.sort();
            names
        },
        "no third revision"
    );
    r.set_ready(0, "True").await;
    // The last child back: on the latest revision (whether or not it is ready yet).
    r.wait_versions(&["v1", "v1", "v1"]).await;
    r.wait_updated(
        "OnLatestRevision",
        &format!("latest ControllerRevision: {first}"),
    )
    .await;
    let end = wait_until("only the first revision", || async {
        let claims = r.revision_claims().await;
        (claims.len() == 1).then_some(claims)
    })
    .await;
    assert_eq!(end.keys().next(), Some(&first));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_outside_the_revision_history_take_effect_at_once() {
    let r = Rollout::new(
        "rolling-fields",
        ApplyStrategy::ServerSide {
            field_manager: "kubelambda".into(),
        },
        "RollingInPlace",
        // Only spec.version is versioned.
        json!({"revisionHistory": {"fieldPaths": ["spec.version"]}}),
    )
    .await;
    let first = r.start_at_v1().await;
    let revision = r.revisions().get(&first).await.expect("revision");
    assert_eq!(
        Value::Object(revision.spec.parent_patch.clone()),
        json!({"spec": {"version": "v1"}}),
        "the revision holds only the versioned fields"
    );
    // More children: no new revision, the new one is created on the latest.
    r.h.patch_parent(&r.parent, json!({"count": 4})).await;
    let claims = wait_until("the fourth child on the same revision", || async {
        let claims = r.revision_claims().await;
        (claims.len() == 1 && claims.get(&first)?.len() == 4).then_some(claims)
    })
    .await;
    assert_eq!(claims[&first].last().map(String::as_str), Some("roll-3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_resumes_the_rollout_where_it_was() {
    let mut r = Rollout::new(
        "rolling-restart",
        ApplyStrategy::ServerSide {
            field_manager: "kubelambda".into(),
        },
        "RollingInPlace",
        json!({}),
    )
    .await;
    r.start_at_v1().await;
    r.set_version("v2").await;
    r.wait_versions(&["v2", "v1", "v1"]).await;
    r.wait_updated("RolloutWaiting", &not_observed(0)).await;
    r.set_ready(0, "True").await;
    let before = r.wait_versions(&["v2", "v2", "v1"]).await;
    r.wait_updated("RolloutWaiting", &not_observed(1)).await;

    // A new engine, knowing nothing: it must neither redo roll-0 and roll-1 nor skip to roll-2.
    r.h.restart();
    r.let_it_sync(5).await;
    let after = r.observed().await.expect("children");
    for name in ["roll-0", "roll-1", "roll-2"] {
        assert_eq!(
            after[name].resource_version(),
            before[name].resource_version(),
            "{name} not written again"
        );
    }
    assert_eq!(r.writes(), 0, "the restarted engine found nothing to write");
    assert_eq!(r.updated().await.expect("condition").2, not_observed(1));

    r.set_ready(1, "True").await;
    r.wait_versions(&["v2", "v2", "v2"]).await;
    wait_until("on the latest revision", || async {
        let (status, reason, _) = r.updated().await?;
        (status == "True" && reason == "OnLatestRevision").then_some(())
    })
    .await;
    assert_eq!(r.revision_claims().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphaned_revision_matching_the_parent_is_adopted_not_duplicated() {
    let r = Rollout::with_selector(
        "rolling-adopt",
        ApplyStrategy::ServerSide {
            field_manager: "kubelambda".into(),
        },
        "RollingRecreate",
        json!({}),
        false,
    )
    .await;
    // The revision a previous controller left for this very parent state, ownerless; labelled
    // with the parent's spec.template.metadata.labels as Metacontroller labels them.
    let spec = json!({
        "version": "v1", "count": 2,
        "selector": {"matchLabels": {"app": "adopt"}},
        "template": {"metadata": {"labels": {"app": "adopt"}}},
    });
    let orphan: ControllerRevision = serde_json::from_value(json!({
        "apiVersion": "metacontroller.k8s.io/v1alpha1",
        "kind": "ControllerRevision",
        "metadata": {"name": "left-behind", "labels": {
            "app": "adopt",
            "metacontroller.k8s.io/apiGroup": "test.kubelambda.io",
            "metacontroller.k8s.io/resource": "testparents",
        }},
        "parentPatch": {"spec": spec},
    }))
    .expect("revision");
    r.revisions()
        .create(&Default::default(), &orphan)
        .await
        .expect("create orphan revision");
    let parent = r.h.parent(&r.parent, spec).await;
    let adopted = wait_until("the orphan adopted and claiming both children", || async {
        let revision = r.revisions().get("left-behind").await.ok()?;
        let names: Vec<String> = revision
            .spec
            .children
            .iter()
            .flat_map(|c| c.names.clone())
            .collect();
        (owner_uid(&revision) == parent.uid() && names == ["roll-0", "roll-1"]).then_some(revision)
    })
    .await;
    r.wait_updated("OnLatestRevision", "latest ControllerRevision: left-behind")
        .await;
    assert_eq!(
        r.revision_claims().await.keys().collect::<Vec<_>>(),
        vec!["left-behind"],
        "no second revision for the same state"
    );
    assert_eq!(
        adopted.labels().get("app").map(String::as_str),
        Some("adopt")
    );

    // A new version: its revision is labelled so that the parent's selector claims it.
    r.set_version("v2").await;
    let claims = wait_until("a second revision", || async {
        let claims = r.revision_claims().await;
        (claims.len() == 2).then_some(claims)
    })
    .await;
    let new = claims
        .keys()
        .find(|k| *k != "left-behind")
        .expect("new revision");
    let revision = r.revisions().get(new).await.expect("new revision");
    assert_eq!(
        revision.labels().get("app").map(String::as_str),
        Some("adopt")
    );
    assert_eq!(owner_uid(&revision), parent.uid());
}
