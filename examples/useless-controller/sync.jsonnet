// Sync hook for UselessPod (example.com/v1): each parent gets one Deployment named
// `useless-<spec.name>`; the parent's status says whether that Deployment has rolled out.
//
// `request` is Metacontroller's composite sync request: {controller, parent, children, related,
// finalizing}. Children are keyed by "<Kind>.<apiVersion>", then by name.
function(request) {
  local parent = request.parent,
  local name = 'useless-' + parent.spec.name,
  // The Deployment as observed (null until it exists).
  local observed = std.get(request.children['Deployment.apps/v1'], name),
  local labels = { app: 'useless', 'useless.example.com/name': parent.spec.name },

  // Rolled out, by `kubectl rollout status`'s rules: the Deployment controller has seen the latest
  // spec, every desired replica is updated, no old one is left, and every updated one is available.
  local rolledOut(d) =
    local status = std.get(d, 'status', {});
    local count(field) = std.get(status, field, 0);
    std.get(status, 'observedGeneration', 0) >= std.get(d.metadata, 'generation', 1)
    && count('updatedReplicas') >= std.get(d.spec, 'replicas', 1)
    && count('replicas') <= count('updatedReplicas')
    && count('availableReplicas') >= count('updatedReplicas'),

  children: [{
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: name, labels: labels },
    spec: {
      replicas: 1,
      selector: { matchLabels: labels },
      template: {
        metadata: { labels: labels },
        spec: {
          containers: [{ name: 'useless', image: 'registry.k8s.io/pause:3.10' }],
        },
      },
    },
  }],
  status: {
    observedGeneration: std.get(parent.metadata, 'generation', 0),
    ready: observed != null && rolledOut(observed),
    availableReplicas: if observed == null then 0 else std.get(std.get(observed, 'status', {}), 'availableReplicas', 0),
  },
}
