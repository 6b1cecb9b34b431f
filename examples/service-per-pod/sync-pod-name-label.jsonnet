// Copies a Pod's name into a label, for clusters or Pods without the StatefulSet controller's
// statefulset.kubernetes.io/pod-name label. A Pod opts in with the annotation
//   pod-name-label: <the label key to set>
// and is no longer selected once the label exists (the decorator's labelSelector says
// `pod-name DoesNotExist`), so each Pod is written once.
function(request) {
  local pod = request.object,
  labels: { [pod.metadata.annotations['pod-name-label']]: pod.metadata.name },
}
