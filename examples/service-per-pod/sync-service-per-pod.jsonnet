// One Service per Pod of a StatefulSet. The StatefulSet opts in with two annotations:
//   service-per-pod-label: the Pod label that holds the Pod's name (the StatefulSet controller
//                          sets statefulset.kubernetes.io/pod-name on every Pod it creates);
//   service-per-pod-ports: "port:targetPort" pairs, comma-separated, e.g. "80:8080,443:8443".
// Scaling down removes the Services of the Pods that went; the attachments kubelambda is not
// given back are deleted.
function(request) {
  local sts = request.object,
  local annotations = sts.metadata.annotations,
  local podLabel = annotations['service-per-pod-label'],
  local replicas = std.get(sts.spec, 'replicas', 1),

  // "80:8080" -> { port: 80, targetPort: 8080 }; a bare "80" targets the same port.
  local port(text) =
    local parts = std.split(std.stripChars(text, ' '), ':');
    {
      name: 'port-' + parts[0],
      port: std.parseInt(parts[0]),
      targetPort: std.parseInt(if std.length(parts) > 1 then parts[1] else parts[0]),
    },
  local ports = [port(p) for p in std.split(annotations['service-per-pod-ports'], ',') if p != ''],

  attachments: [
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: {
        name: sts.metadata.name + '-' + i,
        labels: { app: 'service-per-pod', 'service-per-pod.example.com/statefulset': sts.metadata.name },
      },
      spec: {
        selector: { [podLabel]: sts.metadata.name + '-' + i },
        ports: ports,
      },
    }
    for i in std.range(0, replicas - 1)
  ],
}
