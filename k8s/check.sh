#!/usr/bin/env bash
# k8s/check.sh - render and validate the Kubernetes manifests, offline.
#
#   k8s/check.sh            check everything (what t/160-k8s.t and CI run):
#     1. k8s/base/nginx.conf is conf/nginx.prod.conf.in rendered with
#        k8s/base/nginx-conf.env, and k8s/overlays/dev/schema.sql and
#        grants.sql are conf/schema.sql and conf/grants.sql, byte for byte
#        (kustomize reads no file outside an overlay's directory, so these
#        are copies kept in step here), and k8s/overlays/prod/
#        prometheusrule.yaml is k8s/monitoring/rbcs-rules.yaml as a
#        PrometheusRule (the rules' one source is in Prometheus's format,
#        which promtool checks and tests);
#     2. every overlay under k8s/overlays/ renders (kubectl kustomize);
#     3. every rendered object validates against the Kubernetes API schemas
#        (npm kubernetes-models; ServiceMonitor: @kubernetes-models/
#        prometheus-operator), unknown fields included, and the objects the
#        service needs are there, wired together (k8s/validate.mjs);
#     4. the YAML, written and rendered, passes yamllint (k8s/.yamllint).
#   k8s/check.sh render     rewrite the copies (and the PrometheusRule) from
#                           their sources
#   k8s/check.sh build DIR  print one overlay, rendered (DIR: k8s/overlays/dev)
#
# Tools: kubectl from Debian's kubernetes-client (kustomize v2.0; when
# /usr/bin/kubectl belongs to another package, the Debian one is unpacked
# into k8s/.tools/ with apt-get download), node and npm (the packages of
# k8s/package-lock.json, installed by `npm ci` into k8s/node_modules when
# missing), yamllint.  conf/stack.sh deps installs the Debian packages.
#
# Environment:
#   RBCS_KUBECTL    kubectl to render with (default: Debian's, as above)
#   RBCS_K8S_OUT    directory that keeps the rendered overlays (NAME.yaml);
#                   default: a temporary one
#   RBCS_K8S_SECOND_KUBECTL  another kubectl (e.g. a current one) to render
#                   with as well: its objects must be the same; default: the
#                   kubectl on PATH when it is not Debian's, "none" to skip

set -euo pipefail

K8S="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$K8S/.." && pwd)"
CONF_ENV="$K8S/base/nginx-conf.env"
RULES="$K8S/monitoring/rbcs-rules.yaml"

# the copies kept in step with their sources: COPY|MAKER|what it is|what it
# is not (MAKER OUT writes what COPY must be)
COPIES=(
    "k8s/base/nginx.conf|render_conf|conf/nginx.prod.conf.in rendered with k8s/base/nginx-conf.env|is not a fresh rendering of conf/nginx.prod.conf.in"
    "k8s/overlays/dev/schema.sql|copy_schema|conf/schema.sql|differs from conf/schema.sql"
    "k8s/overlays/dev/grants.sql|copy_grants|conf/grants.sql|differs from conf/grants.sql"
    "k8s/overlays/prod/prometheusrule.yaml|render_rules|k8s/monitoring/rbcs-rules.yaml as a PrometheusRule|is not a fresh rendering of k8s/monitoring/rbcs-rules.yaml"
)

log()  { printf '==> %s\n' "$*"; }
die()  { printf 'k8s/check.sh: ERROR: %s\n' "$*" >&2; exit 1; }
fail=0
bad()  { printf 'k8s/check.sh: FAIL: %s\n' "$*" >&2; fail=1; }

# render_conf OUT: conf/nginx.prod.conf.in with the values of nginx-conf.env
# (NAME=VALUE lines, the value taken as is); every ${NAME} must have one.
render_conf() {
    local kv=() line
    while IFS= read -r line || [ -n "$line" ]; do
        [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
        [[ $line =~ ^[A-Z_]+= ]] || { echo "$CONF_ENV: not NAME=VALUE: $line" >&2; return 1; }
        kv+=("$line")
    done <"$CONF_ENV"
    "$ROOT/conf/stack.sh" render "$ROOT/conf/nginx.prod.conf.in" "$1" "${kv[@]}"
}

copy_schema() { cp "$ROOT/conf/schema.sql" "$1"; }
copy_grants() { cp "$ROOT/conf/grants.sql" "$1"; }

# render_rules OUT: the rules file as a PrometheusRule; its groups go under
# spec as they are, its header comment stays behind
render_rules() {
    grep -q '^[^#]' "$RULES" || { echo "$RULES: no rules" >&2; return 1; }
    {
        cat <<'HEAD'
# Generated from k8s/monitoring/rbcs-rules.yaml by k8s/check.sh render:
# edit that file, then render.  Your Prometheus selects PrometheusRules by
# labels (with kube-prometheus-stack: release: <its release name>): add
# them with a patch in the overlay, not here.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: rbcs
  labels:
    app.kubernetes.io/name: rbcs
spec:
HEAD
        awk 'body || !/^(#.*)?$/ { body = 1; print (NF ? "  " $0 : $0) }' "$RULES"
    } >"$1"
}

# ------------------------------------------------------------------ tools --

is_debian_kubectl() {   # path: a kubectl file that dpkg says is kubernetes-client's
    local owner
    owner=$(dpkg-query -S "$(readlink -f "$1")" 2>/dev/null | cut -d: -f1) || return 1
    [ "$owner" = kubernetes-client ]
}

find_kubectl() {
    if [ -n "${RBCS_KUBECTL:-}" ]; then
        KUBECTL=$RBCS_KUBECTL
    elif [ -x /usr/bin/kubectl ] && is_debian_kubectl /usr/bin/kubectl; then
        KUBECTL=/usr/bin/kubectl
    else
        # /usr/bin/kubectl is missing or another package's (a cloud SDK's,
        # which Debian's could not be installed over): unpack Debian's here
        local tools="$K8S/.tools" deb
        KUBECTL="$tools/kubernetes-client/usr/bin/kubectl"
        if [ ! -x "$KUBECTL" ]; then
            command -v apt-get >/dev/null || die "no Debian kubectl (kubernetes-client) and no apt-get to fetch it"
            log "fetching Debian's kubernetes-client into k8s/.tools (apt-get download)"
            rm -rf "$tools/dl" "$tools/kubernetes-client"
            mkdir -p "$tools/dl"
            chmod 777 "$tools/dl"    # apt's _apt user writes the download
            (cd "$tools/dl" && apt-get download -q kubernetes-client) >&2 ||
                die "apt-get download kubernetes-client failed (apt-get update first?)"
            deb=$(ls "$tools"/dl/kubernetes-client_*.deb)
            dpkg-deb -x "$deb" "$tools/kubernetes-client.tmp"
            mv "$tools/kubernetes-client.tmp" "$tools/kubernetes-client"
            rm -rf "$tools/dl"
        fi
    fi
    "$KUBECTL" version --client >/dev/null 2>&1 || die "$KUBECTL does not run"
}

find_node() {
    command -v node >/dev/null || die "node is missing (Debian package nodejs: conf/stack.sh deps)"
    local major
    major=$(node -p 'process.versions.node.split(".")[0]')
    [ "$major" -ge 18 ] || die "node $major is too old (18 or later)"
    local pkg
    for pkg in kubernetes-models @kubernetes-models/prometheus-operator yaml; do
        [ -d "$K8S/node_modules/$pkg" ] && continue
        command -v npm >/dev/null || die "npm is missing (Debian package npm: conf/stack.sh deps)"
        log "installing k8s/node_modules (npm ci, versions of k8s/package-lock.json)"
        (cd "$K8S" && npm ci --no-audit --no-fund --loglevel=error) >&2 ||
            die "npm ci failed in k8s/"
        break
    done
}

find_yamllint() {
    command -v yamllint >/dev/null || die "yamllint is missing (Debian package yamllint: conf/stack.sh deps)"
}

# ------------------------------------------------------------- commands --

cmd_render() {
    local c copy maker
    for c in "${COPIES[@]}"; do
        IFS='|' read -r copy maker _ <<<"$c"
        "$maker" "$ROOT/$copy.tmp"
        mv "$ROOT/$copy.tmp" "$ROOT/$copy"
        log "wrote $copy"
    done
}

# step OK-TEXT FAIL-TEXT CMD...: run CMD; say which
step() {
    if "${@:3}"; then
        log "$1"
    else
        bad "$2"
    fi
}

in_dir() { (cd "$1" && "${@:2}"); }

# kustomize KUBECTL NAME OUT: render overlays/NAME into OUT, or say why not
kustomize() {
    "$1" kustomize "$K8S/overlays/$2" >"$3" 2>"$tmp/kustomize.err" && return
    cat "$tmp/kustomize.err" >&2
    return 1
}

cmd_build() {
    [ -f "${1:-}/kustomization.yaml" ] || die "usage: k8s/check.sh build k8s/overlays/NAME"
    find_kubectl
    "$KUBECTL" kustomize "$1"
}

cmd_check() {
    local start=$SECONDS out overlay name second="" c copy maker is isnot
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/rbcs-k8s.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    out=${RBCS_K8S_OUT:-$tmp/out}
    mkdir -p "$out"

    find_kubectl
    find_node
    find_yamllint
    log "kubectl: $KUBECTL ($("$KUBECTL" version --client 2>/dev/null | grep -o 'GitVersion:"[^"]*"' | cut -d'"' -f2 || true)), node $(node --version), $(yamllint --version)"

    # 1. the copies
    for c in "${COPIES[@]}"; do
        IFS='|' read -r copy maker is isnot <<<"$c"
        "$maker" "$tmp/fresh"
        if cmp -s "$tmp/fresh" "$ROOT/$copy"; then
            log "$copy is $is"
        else
            diff -u "$ROOT/$copy" "$tmp/fresh" >&2 || true
            bad "$copy $isnot (run: k8s/check.sh render)"
        fi
    done

    # 2. render every overlay
    local overlays=() args=()
    for overlay in "$K8S"/overlays/*/; do
        overlay=${overlay%/}
        [ -f "$overlay/kustomization.yaml" ] || continue
        name=${overlay##*/}
        overlays+=("$name")
        if kustomize "$KUBECTL" "$name" "$out/$name.yaml"; then
            log "rendered overlays/$name: $(grep -c '^kind:' "$out/$name.yaml") objects"
            args+=("$name=$out/$name.yaml")
        else
            bad "overlays/$name does not render"
        fi
    done
    [ ${#overlays[@]} -gt 0 ] || bad "no overlay under k8s/overlays"

    # the same objects from a current kustomize, when there is one
    second=${RBCS_K8S_SECOND_KUBECTL:-}
    if [ -z "$second" ] && command -v kubectl >/dev/null &&
       [ "$(readlink -f "$(command -v kubectl)")" != "$(readlink -f "$KUBECTL")" ] &&
       ! is_debian_kubectl "$(command -v kubectl)"; then
        second=$(command -v kubectl)
    fi
    local second_args=()
    if [ -n "$second" ] && [ "$second" != none ]; then
        for name in "${overlays[@]}"; do
            if kustomize "$second" "$name" "$tmp/$name.second.yaml"; then
                second_args+=("--same=$name=$tmp/$name.second.yaml")
                log "rendered overlays/$name again with $second ($("$second" version --client 2>/dev/null | grep -io 'kustomize version: .*' || echo "?"))"
            else
                bad "overlays/$name does not render with $second"
            fi
        done
    fi

    # 3. schemas and what the service needs
    if [ ${#args[@]} -gt 0 ]; then
        node "$K8S/validate.mjs" --root "$ROOT" "${second_args[@]}" "${args[@]}" ||
            bad "validation failed"
    fi

    # 4. yamllint: the sources, and what kustomize made of them
    step "yamllint: k8s/ sources clean" "yamllint found problems in k8s/" \
        in_dir "$ROOT" yamllint -s -c k8s/.yamllint k8s/
    if [ ${#args[@]} -gt 0 ]; then
        step "yamllint: rendered overlays clean" "yamllint found problems in the rendered overlays" \
            yamllint -s -d "$(rendered_lint_conf)" "$out"/*.yaml
    fi

    if [ $fail -ne 0 ]; then
        printf 'k8s/check.sh: FAILED (%ss)\n' "$((SECONDS - start))" >&2
        exit 1
    fi
    log "k8s: ${overlays[*]} rendered, validated and linted (${SECONDS}s)"
}

# kustomize writes sequences without indentation, and the ConfigMaps' files
# (nginx.conf, schema.sql) as block scalars with their own long and blank lines
rendered_lint_conf() {
    printf '%s' '{extends: '"$K8S"'/.yamllint, rules: {indentation: {spaces: 2, indent-sequences: whatever}, line-length: disable, document-start: disable, comments: disable, empty-lines: disable}}'
}

case "${1:-check}" in
    check)  cmd_check ;;
    render) cmd_render ;;
    build)  shift; cmd_build "$@" ;;
    *)      die "usage: k8s/check.sh [check | render | build k8s/overlays/NAME]" ;;
esac
