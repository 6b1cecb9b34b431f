// kubelambda.libsonnet: helpers for hook authors, bundled into the kubelambda binary.
//
//   local kl = import 'kubelambda.libsonnet';
//
// A file of the same name in the hook's directory or on the jpath takes precedence.
{
  // kubecfg's native functions, with kubecfg's defaults.
  parseJson(str):: std.native('parseJson')(str),
  parseYaml(str):: std.native('parseYaml')(str),
  manifestJson(value, indent=4):: std.native('manifestJson')(value, indent),
  manifestYaml(value):: std.native('manifestYaml')(value),
  escapeStringRegex(str):: std.native('escapeStringRegex')(str),
  regexMatch(regex, str):: std.native('regexMatch')(regex, str),
  regexSubst(regex, src, repl):: std.native('regexSubst')(regex, src, repl),
  resolveImage(image):: std.native('resolveImage')(image),

  // The key of a type in `request.children`, `attachments` and `related`: "Deployment.apps/v1".
  key(kind, apiVersion):: kind + '.' + apiVersion,

  // Observed children of one type, as a list sorted by map key.
  //   kl.children(request, 'Deployment.apps/v1')
  children(request, key)::
    local byName = std.get(std.get(request, 'children', {}), key, {});
    [byName[k] for k in std.objectFields(byName)],

  // One observed child, or null.
  child(request, key, name):: std.get(std.get(std.get(request, 'children', {}), key, {}), name, null),

  // A minimal object; add `spec`, `data` and so on with `+`.
  object(apiVersion, kind, name, namespace=null, labels={}, annotations={}):: {
    apiVersion: apiVersion,
    kind: kind,
    metadata: {
      name: name,
      [if namespace != null then 'namespace']: namespace,
      [if labels != {} then 'labels']: labels,
      [if annotations != {} then 'annotations']: annotations,
    },
  },

  // A status condition in the usual Kubernetes shape; `status` may be a boolean.
  condition(type, status, reason='', message=''):: {
    type: type,
    status: if std.isBoolean(status) then (if status then 'True' else 'False') else status,
    [if reason != '' then 'reason']: reason,
    [if message != '' then 'message']: message,
  },

  // True when `obj` reports condition `type` with status "True".
  conditionTrue(obj, type)::
    local conds = std.get(std.get(obj, 'status', {}), 'conditions', []);
    std.length([c for c in conds if c.type == type && c.status == 'True']) > 0,

  // The parent's generation, for `status.observedGeneration`.
  generation(obj):: std.get(obj.metadata, 'generation', 0),

  // A sync response. `resyncAfterSeconds` is left out when null.
  syncResponse(children=[], status={}, resyncAfterSeconds=null):: {
    children: children,
    status: status,
    [if resyncAfterSeconds != null then 'resyncAfterSeconds']: resyncAfterSeconds,
  },

  // A short, stable hash of any value, for names or annotations that must change with content.
  hash(value, length=10):: std.substr(std.md5(std.manifestJsonMinified(value)), 0, length),
}
