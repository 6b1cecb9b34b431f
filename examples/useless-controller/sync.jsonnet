// Sync hook for UselessPod (example.com/v1): each parent gets one Deployment named
// `useless-<spec.name>`; the parent's status says whether that Deployment exists yet.
//
// `request` is Metacontroller's composite sync request: {controller, parent, children, related,
// finalizing}. Children are keyed by "<Kind>.<apiVersion>", then by name.
function(request) {
  local parent = request.parent,
  local name = 'useless-' + parent.spec.name,
  local observed = request.children['Deployment.apps/v1'],
  local labels = { app: 'useless', 'useless.example.com/name': parent.spec.name },

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
    observedGeneration: if std.objectHas(parent.metadata, 'generation') then parent.metadata.generation else 0,
    ready: std.objectHas(observed, name),
  },
}
