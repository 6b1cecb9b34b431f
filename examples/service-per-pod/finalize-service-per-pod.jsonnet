// Called instead of sync when the StatefulSet is deleted or stops opting in (an annotation
// removed): remove every Service, and say "finalized" once none is left, which lets kubelambda
// take its finalizer off the StatefulSet.
function(request) {
  attachments: [],
  finalized: std.length(request.attachments['Service.v1']) == 0,
}
