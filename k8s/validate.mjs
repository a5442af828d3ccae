// k8s/validate.mjs - validate rendered overlays, offline (run by k8s/check.sh).
//
//   node k8s/validate.mjs --root REPO [--same=NAME=FILE]... NAME=FILE...
//
// FILE is the output of `kubectl kustomize k8s/overlays/NAME`.  Every object
// in it must:
//   - validate against the Kubernetes API schema of its apiVersion and kind
//     (npm kubernetes-models; monitoring.coreos.com: @kubernetes-models/
//     prometheus-operator).  A kind without a schema is an error, not a skip;
//   - have no field the schema does not know (kubernetes-models' validators
//     allow unknown fields, as the API server drops them silently: a typo
//     such as "readinesProbe" would pass.  The validator reads, for every
//     object it checks, each property its schema defines, and enumerates the
//     free-form maps; a property it never read is unknown);
// and the overlay must hold what RBCS needs, wired together (requirements
// below).  --same NAME=FILE: the same overlay rendered by another kustomize;
// its objects must be the same (names of generated ConfigMaps aside, whose
// hash differs between kustomize versions).  These rules are the one
// statement of the policy: t/160-k8s.t runs k8s/check.sh, and proves with
// broken copies of the tree that the rules fail.
//
// Exit status 0 when everything holds, 1 otherwise, with one line per
// problem.

import { readFileSync } from "node:fs";
import { isDeepStrictEqual, parseArgs } from "node:util";
import { parseAllDocuments } from "yaml";

// ------------------------------------------------------------ arguments --

let args;
try {
    args = parseArgs({ allowPositionals: true, options: {
        root: { type: "string" }, same: { type: "string", multiple: true } } });
} catch {
    usage();
}
const root = args.values.root;
const same = new Map((args.values.same ?? []).map(splitPair));
const overlays = args.positionals.map(splitPair).map(([name, file]) => ({ name, file }));
if (!root || overlays.length === 0) {
    usage();
}

function splitPair(s) {
    const i = s.indexOf("=");
    if (i <= 0) {
        usage();
    }
    return [s.slice(0, i), s.slice(i + 1)];
}

function usage() {
    console.error("usage: node validate.mjs --root REPO [--same=NAME=FILE]... NAME=FILE...");
    process.exit(2);
}

// What the repository says the pods run with: the values nginx.conf was
// rendered with, and the rendered file itself (k8s/check.sh checks that it
// is a fresh rendering of conf/nginx.prod.conf.in).
const confEnv = {};
for (const line of readFileSync(`${root}/k8s/base/nginx-conf.env`, "utf8").split("\n")) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line);
    if (m) {
        confEnv[m[1]] = m[2];
    }
}
const nginxConf = readFileSync(`${root}/k8s/base/nginx.conf`, "utf8");

// What the image is built with (docker/Dockerfile, which
// t/180-static-build.t checks): its user, and the ports it exposes.
const IMAGE = { uid: 10001, httpPort: 8080, opsPort: 9145 };

// What each overlay must be, beyond what every overlay must be.
const EXPECT = {
    dev: {
        replicas: (n) => n >= 1 && n < 3,
        replicasText: "fewer than prod's 3",
        // the Secrets are in the overlay (public, dev-only values); no
        // certificate: the entrypoint makes a self-signed one
        externalSecrets: [],
        optionalSecrets: ["rbcs-tls"],
        selfSignedTls: true,
        scrapedBy: "annotations",
        inClusterDatabases: true,
        // MariaDB runs these in name order when its data directory is new:
        // the schema, the role, then the service's user with the role only
        initdb: {
            "schema.sql": "conf/schema.sql",
            "service-grants.sql": "conf/grants.sql",
            "service-user.sh": "k8s/overlays/dev/service-user.sh",
        },
    },
    prod: {
        replicas: (n) => n === 3,
        replicasText: "3",
        // created from the secret store, never rendered from git
        externalSecrets: ["rbcs-db", "rbcs-keys", "rbcs-redis", "rbcs-tls"],
        scrapedBy: "ServiceMonitor",
        guaranteed: true,
        zoneSpreadRequired: true,
        externalDatabases: true,
    },
};

// ---------------------------------------------------------- the checks --

let failures = 0;
const say = (s) => console.log(s);

function fail(where, msg) {
    failures++;
    console.log(`not ok - ${where}: ${msg}`);
}

// failIf(WHERE, [[BROKEN, MESSAGE]...]): a failure for each rule broken
function failIf(where, rules) {
    for (const [broken, msg] of rules) {
        if (broken) {
            fail(where, msg);
        }
    }
}

const objId = (o) => `${o?.kind}/${o?.metadata?.name}`;

async function loadModel(apiVersion, kind) {
    if (typeof apiVersion !== "string" || typeof kind !== "string"
        || !/^([a-z0-9.-]+\/)?v[0-9a-z]+$/.test(apiVersion)
        || !/^[A-Z][A-Za-z0-9]*$/.test(kind)) {
        return null;
    }
    const path = apiVersion.includes("/") ? `${apiVersion}/${kind}` : `v1/${kind}`;
    const pkg = apiVersion.startsWith("monitoring.coreos.com/")
        ? "@kubernetes-models/prometheus-operator" : "kubernetes-models";
    if (!apiVersion.includes("/") && apiVersion !== "v1") {
        return null;
    }
    try {
        const mod = await import(`${pkg}/${path}`);
        return mod[kind] ?? null;
    } catch {
        return null;
    }
}

// Wrap an object so that every property read and every enumeration is
// recorded, per (sub)object.
function tracked(data) {
    const records = [];
    const proxies = new WeakMap();
    const wrap = (obj, path) => {
        if (obj === null || typeof obj !== "object") {
            return obj;
        }
        if (proxies.has(obj)) {
            return proxies.get(obj);
        }
        const rec = { obj, path, read: new Set(), enumerated: false };
        records.push(rec);
        const proxy = new Proxy(obj, {
            get(target, key, receiver) {
                const value = Reflect.get(target, key, receiver);
                if (typeof key !== "string") {
                    return value;
                }
                rec.read.add(key);
                return Object.prototype.hasOwnProperty.call(target, key)
                    ? wrap(value, `${path}/${key}`) : value;
            },
            has(target, key) {
                if (typeof key === "string") {
                    rec.read.add(key);
                }
                return Reflect.has(target, key);
            },
            ownKeys(target) {
                rec.enumerated = true;
                return Reflect.ownKeys(target);
            },
        });
        proxies.set(obj, proxy);
        return proxy;
    };
    return { proxy: wrap(data, ""), records };
}

async function validateSchema(where, o) {
    const Model = await loadModel(o?.apiVersion, o?.kind);
    if (!Model) {
        fail(where, `no Kubernetes schema for apiVersion ${o?.apiVersion} kind ${o?.kind}`);
        return false;
    }
    const { proxy, records } = tracked(structuredClone(o));
    try {
        Model.prototype.validate.call(proxy);
    } catch (e) {
        const errors = e.errors ?? [];
        if (errors.length === 0) {
            fail(where, `schema: ${e.message}`);
        }
        for (const err of errors) {
            fail(where, `schema: ${err.instancePath || "/"} ${err.message}`
                 + (err.params ? ` ${JSON.stringify(err.params)}` : ""));
        }
        return false;
    }
    let ok = true;
    for (const rec of records) {
        if (Array.isArray(rec.obj) || rec.enumerated) {
            continue;
        }
        for (const key of Object.keys(rec.obj)) {
            if (!rec.read.has(key)) {
                fail(where, `schema: unknown field ${rec.path}/${key}`);
                ok = false;
            }
        }
    }
    return ok;
}

// -------------------------------------------------------------- helpers --

const podTemplateKinds = new Set(["Deployment", "StatefulSet", "DaemonSet", "Job"]);

function matches(selector, labels) {
    if (!selector || typeof selector !== "object") {
        return false;
    }
    const ml = selector.matchLabels ?? {};
    if (Object.keys(ml).length === 0 && !(selector.matchExpressions?.length)) {
        return false;    // an empty selector selects everything: not ours
    }
    for (const [k, v] of Object.entries(ml)) {
        if (labels?.[k] !== v) {
            return false;
        }
    }
    for (const e of selector.matchExpressions ?? []) {
        const has = labels && Object.prototype.hasOwnProperty.call(labels, e.key);
        const v = labels?.[e.key];
        if ((e.operator === "In" && !(has && e.values.includes(v)))
            || (e.operator === "NotIn" && has && e.values.includes(v))
            || (e.operator === "Exists" && !has)
            || (e.operator === "DoesNotExist" && has)) {
            return false;
        }
    }
    return true;
}

// a resource quantity as a number: "2" and 2 -> 2, "1500m" -> 1.5,
// "512Mi" -> 536870912; NaN when it is none
function quantity(q) {
    const m = /^([0-9.]+)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(String(q ?? ""));
    if (!m) {
        return NaN;
    }
    if (m[2] === "m") {
        return Number(m[1]) / 1000;
    }
    const mult = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40,
                   k: 1e3, M: 1e6, G: 1e9, T: 1e12 }[m[2]] ?? 1;
    return Number(m[1]) * mult;
}

function portNumber(port, container) {
    if (typeof port === "number") {
        return port;
    }
    return (container?.ports ?? []).find((p) => p.name === port)?.containerPort;
}

// -------------------------------------------------------- requirements --

function checkGeneral(name, objs, expect) {
    const where = (o) => `${name}: ${objId(o)}`;

    // one namespace, which the overlay creates
    const nsObjs = objs.filter((o) => o.kind === "Namespace");
    const namespaced = objs.filter((o) => o.kind !== "Namespace");
    const nss = new Set(namespaced.map((o) => o.metadata?.namespace));
    if (nss.size !== 1 || [...nss][0] === undefined) {
        fail(name, `namespaced objects are in ${[...nss].join(", ") || "no namespace"}, not in one`);
    } else if (!nsObjs.some((n) => n.metadata.name === [...nss][0])) {
        fail(name, `no Namespace object for namespace ${[...nss][0]}`);
    }
    for (const n of nsObjs) {
        if (n.metadata?.labels?.["pod-security.kubernetes.io/enforce"] !== "restricted") {
            fail(where(n), "does not enforce the restricted Pod Security Standard");
        }
    }

    const byKind = (k) => objs.filter((o) => o.kind === k);
    const find = (k, n) => objs.find((o) => o.kind === k && o.metadata?.name === n);
    const workloads = objs.filter((o) => podTemplateKinds.has(o.kind));

    for (const w of workloads) {
        const pod = w.spec?.template?.spec ?? {};
        const podLabels = w.spec?.template?.metadata?.labels ?? {};
        if (w.spec?.selector && !matches(w.spec.selector, podLabels)) {
            fail(where(w), "spec.selector does not select its own pod template");
        }
        // Pod Security Standard "restricted" (the namespaces enforce it)
        const psc = pod.securityContext ?? {};
        failIf(where(w), [[pod.hostNetwork || pod.hostPID || pod.hostIPC,
                           "uses the host's network, PID or IPC namespace"]]);
        for (const v of pod.volumes ?? []) {
            failIf(where(w), [
                [v.hostPath, `volume ${v.name} is a hostPath`],
                [v.configMap && !find("ConfigMap", v.configMap.name),
                 `volume ${v.name}: no ConfigMap ${v.configMap?.name}`],
            ]);
            if (v.secret && !(v.secret.optional && expect.optionalSecrets?.includes(v.secret.secretName))) {
                checkSecretRef(where(w), find, expect, v.secret.secretName,
                               (v.secret.items ?? []).map((i) => i.key));
            }
        }
        const sa = pod.serviceAccountName;
        if (sa && sa !== "default" && !find("ServiceAccount", sa)) {
            fail(where(w), `no ServiceAccount ${sa}`);
        }
        const volumeNames = new Set([
            ...(pod.volumes ?? []).map((v) => v.name),
            ...(w.spec?.volumeClaimTemplates ?? []).map((v) => v.metadata?.name),
        ]);
        for (const c of [...(pod.initContainers ?? []), ...(pod.containers ?? [])]) {
            const cw = `${where(w)} container ${c.name}`;
            const csc = c.securityContext ?? {};
            failIf(cw, [
                [!(csc.runAsNonRoot ?? psc.runAsNonRoot), "runAsNonRoot is not true"],
                [(csc.runAsUser ?? psc.runAsUser) === 0, "runs as uid 0"],
                [psc.seccompProfile?.type !== "RuntimeDefault"
                 || (csc.seccompProfile ?? psc.seccompProfile).type !== "RuntimeDefault",
                 "seccompProfile is not RuntimeDefault for the pod and the container"],
                [csc.allowPrivilegeEscalation !== false, "allowPrivilegeEscalation is not false"],
                [csc.privileged, "privileged"],
                [!isDeepStrictEqual(csc.capabilities?.drop, ["ALL"]), 'capabilities do not drop ["ALL"]'],
                [(csc.capabilities?.add ?? []).length > 0, "adds capabilities"],
                ...["cpu", "memory"].map((k) => [!c.resources?.requests?.[k] || !c.resources?.limits?.[k],
                                                 `no ${k} request and limit`]),
                ...(c.volumeMounts ?? []).map((m) => [!volumeNames.has(m.name),
                                                      `mounts ${m.name}, which is no volume`]),
            ]);
            for (const e of c.env ?? []) {
                const ref = e.valueFrom?.secretKeyRef;
                if (ref) {
                    checkSecretRef(cw, find, expect, ref.name, [ref.key]);
                }
                const cref = e.valueFrom?.configMapKeyRef;
                if (cref && !find("ConfigMap", cref.name)?.data?.[cref.key]) {
                    fail(cw, `env ${e.name}: no ConfigMap key ${cref.name}/${cref.key}`);
                }
            }
        }
    }

    const selectedPods = (sel) => workloads.filter((w) => matches(sel, w.spec?.template?.metadata?.labels));

    for (const s of byKind("Service")) {
        if (s.spec?.type === "ExternalName") {
            continue;
        }
        const ws = selectedPods({ matchLabels: s.spec?.selector ?? {} });
        if (ws.length === 0) {
            fail(where(s), "its selector selects no pods of the overlay");
            continue;
        }
        for (const p of s.spec?.ports ?? []) {
            const t = p.targetPort ?? p.port;
            const ok = ws.every((w) => w.spec.template.spec.containers.some(
                (c) => (c.ports ?? []).some((cp) => cp.name === t || cp.containerPort === t)));
            if (!ok) {
                fail(where(s), `port ${p.name ?? p.port}: no container port ${t} in the selected pods`);
            }
        }
    }
    for (const h of byKind("HorizontalPodAutoscaler")) {
        const t = h.spec?.scaleTargetRef ?? {};
        if (!find(t.kind, t.name)) {
            fail(where(h), `scaleTargetRef ${t.kind}/${t.name} is not in the overlay`);
        }
    }
    for (const p of [...byKind("PodDisruptionBudget"), ...byKind("NetworkPolicy")]) {
        const sel = p.kind === "NetworkPolicy" ? p.spec?.podSelector : p.spec?.selector;
        if (selectedPods(sel).length === 0) {
            fail(where(p), "its selector selects no pods of the overlay");
        }
    }
    for (const m of byKind("ServiceMonitor")) {
        const svcs = byKind("Service").filter((s) => matches(m.spec?.selector, s.metadata?.labels));
        if (svcs.length === 0) {
            fail(where(m), "selects no Service of the overlay");
        }
        for (const e of m.spec?.endpoints ?? []) {
            if (!svcs.every((s) => (s.spec?.ports ?? []).some((p) => p.name === e.port))) {
                fail(where(m), `endpoint port ${e.port} is not a port of the Services it selects`);
            }
        }
    }
}

function checkSecretRef(where, find, expect, name, keys) {
    const s = find("Secret", name);
    if (!s) {
        if (!expect.externalSecrets?.includes(name)) {
            fail(where, `no Secret ${name} in the overlay (and it is not one created outside it)`);
        }
        return;
    }
    const have = { ...(s.data ?? {}), ...(s.stringData ?? {}) };
    for (const k of keys) {
        if (!have[k]) {
            fail(where, `Secret ${name} has no key ${k}, or it is empty`);
        }
    }
}

function checkRbcs(name, objs, expect) {
    const find = (k, n) => objs.find((o) => o.kind === k && o.metadata?.name === n);
    const w = (what) => `${name}: ${what}`;
    const httpPort = Number(confEnv.HTTP_PORT);
    const opsPort = Number(confEnv.OPS_PORT);

    // the listeners nginx.conf opens are the ports the pod declares
    const listens = [...nginxConf.matchAll(/^\s*listen\s+(\d+)(\s+ssl)?\s*;/gm)];
    const protocols = /^\s*ssl_protocols\s+([^;]*);/m.exec(nginxConf)?.[1].split(/\s+/).sort();
    const left = [...new Set([...nginxConf.matchAll(/@([A-Z_]+)@/g)].map((m) => m[1]))];
    const directive = (d, v) => [!new RegExp(`^\\s*${d}\\s+${v.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")};`, "m")
                                 .test(nginxConf), `no ${d} ${v}`];
    failIf(w("nginx.conf"), [
        [!isDeepStrictEqual(listens.map((m) => Number(m[1])).sort(), [httpPort, opsPort].sort()),
         `listens on ${listens.map((m) => m[1]).join(", ")}, not on HTTP_PORT ${httpPort} and OPS_PORT ${opsPort}`],
        // the API listener is TLS, with modern protocols only; the probes'
        // listener is not (kubelet's httpGet probes speak plain HTTP)
        ...listens.flatMap((m) => [
            [Number(m[1]) === httpPort && !m[2], `the API listener ${httpPort} is not "listen ... ssl"`],
            [Number(m[1]) === opsPort && m[2],
             `the operations listener ${opsPort} is TLS: the httpGet probes would fail`]]),
        [!isDeepStrictEqual(protocols, ["TLSv1.2", "TLSv1.3"]),
         `ssl_protocols is ${protocols?.join(" ") ?? "not set"}, not TLSv1.2 TLSv1.3`],
        directive("ssl_certificate", confEnv.TLS_CERT),
        directive("ssl_certificate_key", confEnv.TLS_KEY),
        [!isDeepStrictEqual([...left].sort(), ["MYSQL_PASSWORD", "MYSQL_USER"]),
         `placeholders left: ${left.join(", ") || "none"} (exactly @MYSQL_USER@ and @MYSQL_PASSWORD@, filled at start from the Secret)`],
    ]);
    failIf(w("nginx-conf.env"), [
        [httpPort !== IMAGE.httpPort || opsPort !== IMAGE.opsPort,
         `HTTP_PORT ${httpPort} and OPS_PORT ${opsPort} are not the ports the image exposes, ${IMAGE.httpPort} and ${IMAGE.opsPort}`],
        [confEnv.MODULE !== "", "MODULE is not empty (the module is compiled into the image)"],
        [confEnv.USER_DIRECTIVE !== "", `USER_DIRECTIVE is not empty (the pod runs as uid ${IMAGE.uid}, not as root)`],
    ]);

    const d = find("Deployment", "rbcs");
    if (!d) {
        fail(w("Deployment/rbcs"), "missing");
        return;
    }
    const dw = w("Deployment/rbcs");
    const pod = d.spec?.template?.spec ?? {};
    const podLabels = d.spec?.template?.metadata?.labels ?? {};
    if (!expect.replicas?.(d.spec?.replicas) && expect.replicas) {
        fail(dw, `replicas is ${d.spec?.replicas}, not ${expect.replicasText}`);
    }
    const c = (pod.containers ?? []).find((x) => x.name === "rbcs");
    if (!c) {
        fail(dw, "no container rbcs");
        return;
    }
    const cw = `${dw} container rbcs`;
    const ports = Object.fromEntries((c.ports ?? []).map((p) => [p.name, p.containerPort]));
    const probe = (what, path) => [
        [!c[what], `no ${what}`],
        [c[what] && (c[what].httpGet?.path !== path || portNumber(c[what].httpGet?.port, c) !== opsPort),
         `${what} is not httpGet ${path} on the ops port ${opsPort}`]];
    failIf(cw, [
        [!/(^|\/)rbcs:\w[\w.-]*(@sha256:[0-9a-f]{64})?$/.test(c.image ?? ""),
         `image ${c.image} is not the rbcs image with a tag`],
        [!isDeepStrictEqual(ports, { http: httpPort, ops: opsPort }),
         `ports are ${JSON.stringify(ports)}, not only http ${httpPort} and ops ${opsPort}`],
        ...probe("readinessProbe", "/readyz"),
        ...probe("livenessProbe", "/healthz"),
        ...probe("startupProbe", "/healthz"),
    ]);

    // graceful drain: preStop waits while the endpoints controller takes the
    // pod out of the Service; the grace period covers it and nginx's stop
    const pre = c.lifecycle?.preStop;
    const cmd = (pre?.exec?.command ?? []).join(" ");
    const sleep = Number(/\bsleep\s+(\d+)/.exec(cmd)?.[1] ?? pre?.sleep?.seconds);
    if (!(sleep > 0)) {
        fail(cw, "no preStop hook that waits (sleep) before nginx is stopped");
    } else if (!((pod.terminationGracePeriodSeconds ?? 30) > sleep + 5)) {
        fail(dw, `terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds ?? 30} leaves nginx no time after the ${sleep}s preStop`);
    }

    // security context: the image's user, said by the pod and the
    // container; resources: nginx runs WORKERS workers, the CPU limit
    // matches; prod's are Guaranteed (requests equal to limits)
    const psc = pod.securityContext ?? {};
    const csc = c.securityContext ?? {};
    const r = c.resources ?? {};
    const rnames = [...Object.keys(r.requests ?? {}), ...Object.keys(r.limits ?? {})];
    failIf(cw, [
        [psc.runAsNonRoot !== true || csc.runAsNonRoot !== true,
         "runAsNonRoot is not true for the pod and the container"],
        [psc.runAsUser !== IMAGE.uid || (csc.runAsUser ?? IMAGE.uid) !== IMAGE.uid,
         `does not run as uid ${IMAGE.uid} (the image's user)`],
        [csc.readOnlyRootFilesystem !== true, "readOnlyRootFilesystem is not true"],
        [quantity(r.limits?.cpu) !== Number(confEnv.WORKERS),
         `CPU limit ${r.limits?.cpu} is not worker_processes (${confEnv.WORKERS})`],
        [expect.guaranteed && rnames.some((k) => quantity(r.requests?.[k]) !== quantity(r.limits?.[k])),
         "requests are not equal to limits (Guaranteed QoS)"],
    ]);

    // topology spread over zones and nodes
    const tsc = pod.topologySpreadConstraints ?? [];
    for (const key of ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]) {
        const t = tsc.find((x) => x.topologyKey === key);
        if (!t || !matches(t.labelSelector, podLabels)) {
            fail(dw, `no topologySpreadConstraint over ${key} selecting its pods`);
        } else if (expect.zoneSpreadRequired && t.whenUnsatisfiable !== "DoNotSchedule") {
            fail(dw, `the spread over ${key} is not DoNotSchedule`);
        }
    }

    // volumes: nginx.conf from the ConfigMap, keys and credentials from
    // Secrets, writable prefix and /tmp
    const vol = (n) => (pod.volumes ?? []).find((v) => v.name === n);
    const mountAt = (path) => (c.volumeMounts ?? []).find((m) => m.mountPath === path);
    const mConf = mountAt("/etc/rbcs/nginx.conf");
    const cmName = vol(mConf?.name)?.configMap?.name;
    const cm = find("ConfigMap", cmName);
    if (!mConf || mConf.subPath !== "nginx.conf" || !cm) {
        fail(cw, "/etc/rbcs/nginx.conf is not the key nginx.conf of a ConfigMap of the overlay");
    } else if (cm.data?.["nginx.conf"] !== nginxConf) {
        fail(w(`ConfigMap/${cmName}`), "nginx.conf is not k8s/base/nginx.conf (the rendered conf/nginx.prod.conf.in)");
    }
    // a Secret mounted read-only as a directory, its items giving FILES
    // (paths in that directory); without subPath, which would keep a
    // changed Secret (a rotated key, a renewed certificate) out of the pod
    const secretDir = (secretName, files) => {
        const dir = files[0].replace(/\/[^/]+$/, "");
        const m = mountAt(dir);
        const s = vol(m?.name)?.secret;
        const given = (s?.items ?? []).map((i) => `${dir}/${i.path}`);
        if (!m || s?.secretName !== secretName || m.readOnly !== true || m.subPath
            || !files.every((f) => given.includes(f))) {
            fail(cw, `${dir} is not the Secret ${secretName} mounted read-only, without subPath, giving ${files.join(" and ")}`);
        }
        return s;
    };
    secretDir("rbcs-keys", [confEnv.KEYS_FILE]);
    secretDir("rbcs-db", ["/etc/rbcs/db/username", "/etc/rbcs/db/password"]);
    secretDir("rbcs-redis", [confEnv.REDIS_PASSWORD_FILE, confEnv.REDIS_HMAC_KEY_FILE]);
    // the API listener's certificate and key (a kubernetes.io/tls Secret);
    // in dev, a self-signed one the entrypoint makes when it is absent
    const tls = secretDir("rbcs-tls", [confEnv.TLS_CERT, confEnv.TLS_KEY]);
    const selfSigned = (c.env ?? []).some((e) => e.name === "RBCS_TLS_SELF_SIGNED" && e.value === "1");
    failIf(cw, [
        [expect.selfSignedTls && !selfSigned,
         "RBCS_TLS_SELF_SIGNED is not 1: without the Secret rbcs-tls nginx has no certificate"],
        [!expect.selfSignedTls && selfSigned,
         "RBCS_TLS_SELF_SIGNED is set: a self-signed certificate is for development only"],
        [!expect.selfSignedTls && tls?.optional,
         "the Secret rbcs-tls is optional: a pod without it would not start"],
        ...[confEnv.PREFIX, "/tmp"].map((path) => [mountAt(path), path]).map(([m, path]) => [
            !m || !vol(m.name)?.emptyDir || m.readOnly,
            `${path} is not a writable emptyDir (the root filesystem is read-only)`]),
    ]);

    // the Service: port 80 to http, and nothing else (never the ops port)
    const svc = find("Service", "rbcs");
    if (!svc) {
        fail(w("Service/rbcs"), "missing");
    } else {
        const sports = (svc.spec?.ports ?? []).map((p) => `${p.port}>${p.targetPort}`);
        failIf(w("Service/rbcs"), [
            [svc.spec?.type !== "ClusterIP" || svc.spec?.clusterIP === "None", "is not a ClusterIP Service"],
            [!matches({ matchLabels: svc.spec?.selector ?? {} }, podLabels), "does not select the rbcs pods"],
            [!isDeepStrictEqual(sports, ["80>http"]),
             `ports are ${sports.join(", ") || "none"}, not only 80 to the container port http`],
        ]);
    }

    // autoscaling: CPU and requests per second
    const hpa = objs.find((o) => o.kind === "HorizontalPodAutoscaler"
                          && o.spec?.scaleTargetRef?.kind === "Deployment"
                          && o.spec?.scaleTargetRef?.name === "rbcs");
    if (!hpa) {
        fail(w("HorizontalPodAutoscaler"), "none scales Deployment/rbcs");
    } else {
        const ms = hpa.spec.metrics ?? [];
        failIf(w(`HorizontalPodAutoscaler/${hpa.metadata.name}`), [
            [hpa.apiVersion !== "autoscaling/v2", `is ${hpa.apiVersion}, not autoscaling/v2`],
            [hpa.spec.minReplicas !== d.spec.replicas,
             `minReplicas ${hpa.spec.minReplicas} is not the Deployment's replicas ${d.spec.replicas}`],
            [!(hpa.spec.maxReplicas > hpa.spec.minReplicas), "maxReplicas is not above minReplicas"],
            [!ms.some((m) => m.type === "Resource" && m.resource?.name === "cpu"
                      && m.resource?.target?.type === "Utilization"
                      && m.resource?.target?.averageUtilization > 0), "no CPU utilization target"],
            [!ms.some((m) => m.type === "Pods"
                      && m.pods?.metric?.name === "rbcs_http_requests_per_second"
                      && m.pods?.target?.type === "AverageValue"),
             "no Pods metric rbcs_http_requests_per_second with an AverageValue target"],
        ]);
    }

    // disruption budget
    const pdb = objs.find((o) => o.kind === "PodDisruptionBudget" && matches(o.spec?.selector, podLabels));
    if (!pdb) {
        fail(w("PodDisruptionBudget"), "none covers the rbcs pods");
    } else if (pdb.spec.minAvailable === undefined && pdb.spec.maxUnavailable === undefined) {
        fail(w(`PodDisruptionBudget/${pdb.metadata.name}`), "neither minAvailable nor maxUnavailable");
    } else if (typeof pdb.spec.minAvailable === "number" && pdb.spec.minAvailable >= d.spec.replicas) {
        fail(w(`PodDisruptionBudget/${pdb.metadata.name}`), `minAvailable ${pdb.spec.minAvailable} blocks every eviction at ${d.spec.replicas} replicas`);
    }

    // metrics: scrape annotations or a ServiceMonitor on the ops port
    const ann = d.spec?.template?.metadata?.annotations ?? {};
    const byAnnotation = ann["prometheus.io/scrape"] === "true"
        && Number(ann["prometheus.io/port"]) === opsPort
        && ann["prometheus.io/path"] === "/metrics";
    const monitors = objs.filter((o) => o.kind === "ServiceMonitor").filter((m) =>
        objs.some((s) => s.kind === "Service" && matches(m.spec?.selector, s.metadata?.labels)
                  && matches({ matchLabels: s.spec?.selector ?? {} }, podLabels)
                  && (m.spec?.endpoints ?? []).some((e) => (e.path ?? "/metrics") === "/metrics"
                      && (s.spec?.ports ?? []).some((p) => p.name === e.port
                          && portNumber(p.targetPort ?? p.port, c) === opsPort))));
    if (expect.scrapedBy === "ServiceMonitor") {
        if (monitors.length === 0) {
            fail(w("ServiceMonitor"), `none scrapes /metrics on the ops port ${opsPort} of the rbcs pods`);
        }
        if (ann["prometheus.io/scrape"] !== "false") {
            fail(dw, 'prometheus.io/scrape is not "false": scraped by annotation as well as by the ServiceMonitor');
        }
    } else if (expect.scrapedBy === "annotations") {
        if (!byAnnotation || monitors.length > 0) {
            fail(dw, `not scraped by annotation only (prometheus.io/scrape "true", port ${opsPort}, path /metrics)`);
        }
    } else if (byAnnotation === (monitors.length > 0)) {
        fail(dw, "not scraped once: by annotation (prometheus.io/*) or by a ServiceMonitor for /metrics");
    }

    // the databases, under the names nginx.conf connects to
    for (const [host, port, what] of [[confEnv.MYSQL_HOST, confEnv.MYSQL_PORT, "MariaDB/MySQL"],
                                      [confEnv.REDIS_HOST, confEnv.REDIS_PORT, "Redis"]]) {
        const s = find("Service", host);
        if (!s) {
            fail(w(`Service/${host}`), `missing: nginx.conf connects to ${what} as ${host}:${port}`);
            continue;
        }
        failIf(w(`Service/${host}`), [
            [!(s.spec?.ports ?? []).some((p) => p.port === Number(port)), `has no port ${port}`],
            [expect.externalDatabases && (s.spec?.type !== "ExternalName" || !s.spec?.externalName),
             `is not an ExternalName Service for the managed ${what}`],
            [expect.inClusterDatabases && s.spec?.type === "ExternalName",
             `is an ExternalName: the dev overlay runs ${what} in the cluster`],
        ]);
    }

    if (expect.inClusterDatabases) {
        checkDevDatabases(name, objs, find, expect);
    }
    for (const s of expect.externalSecrets ?? []) {
        if (find("Secret", s)) {
            fail(w(`Secret/${s}`), "is rendered from git: it must come from the secret store");
        }
    }
}

function checkDevDatabases(name, objs, find, expect) {
    const w = (what) => `${name}: ${what}`;
    const mysql = find("Service", confEnv.MYSQL_HOST);
    const sts = objs.find((o) => o.kind === "StatefulSet"
                          && matches({ matchLabels: mysql?.spec?.selector ?? {} }, o.spec?.template?.metadata?.labels));
    if (!sts) {
        fail(w("StatefulSet"), `no StatefulSet behind Service ${confEnv.MYSQL_HOST}`);
    } else {
        const c = sts.spec.template.spec.containers[0];
        const args = [...(c.command ?? []), ...(c.args ?? [])].join(" ");
        const init = (c.volumeMounts ?? []).find((m) => m.mountPath === "/docker-entrypoint-initdb.d");
        const cmName = (sts.spec.template.spec.volumes ?? []).find((v) => v.name === init?.name)?.configMap?.name;
        const cm = find("ConfigMap", cmName);
        failIf(w(`StatefulSet/${sts.metadata.name}`), [
            [!(sts.spec.volumeClaimTemplates ?? []).some((t) => (c.volumeMounts ?? []).some(
                (m) => m.name === t.metadata?.name && m.mountPath === "/var/lib/mysql")),
             "its data directory /var/lib/mysql is not on a PersistentVolumeClaim"],
            [!/--innodb[-_]flush[-_]log[-_]at[-_]trx[-_]commit=1\b/.test(args),
             "does not run with innodb_flush_log_at_trx_commit=1 (a 201 means durable)"],
            [(c.env ?? []).some((e) => /^MARIADB_(USER|PASSWORD)/.test(e.name)),
             "sets MARIADB_USER or MARIADB_PASSWORD: the image would grant that user ALL on the database"],
            ...Object.entries(expect.initdb).map(([file, source]) => [
                cm?.data?.[file] !== readFileSync(`${root}/${source}`, "utf8"),
                `/docker-entrypoint-initdb.d is not a ConfigMap holding ${source} as ${file}`]),
        ]);
    }
    const redis = find("Service", confEnv.REDIS_HOST);
    const rd = objs.find((o) => o.kind === "Deployment"
                         && matches({ matchLabels: redis?.spec?.selector ?? {} }, o.spec?.template?.metadata?.labels));
    if (!rd) {
        fail(w("Deployment"), `no Redis Deployment behind Service ${confEnv.REDIS_HOST}`);
    } else {
        const c = rd.spec.template.spec.containers[0];
        const argv = [...(c.command ?? []), ...(c.args ?? [])];
        const i = argv.indexOf("--save");
        if (i < 0 || argv[i + 1] !== "") {
            fail(w(`Deployment/${rd.metadata.name}`), 'Redis does not run with save "" (a pure cache)');
        }
    }
}

// ------------------------------------------------- same objects, again --

function normalized(objs) {
    // generated ConfigMaps/Secrets: NAME-HASH -> NAME-<hash>
    const gen = new Map();
    for (const o of objs) {
        const n = o.metadata?.name ?? "";
        const m = /^(.*)-([a-z0-9]{10})$/.exec(n);
        if ((o.kind === "ConfigMap" || o.kind === "Secret") && m) {
            gen.set(n, `${m[1]}-<hash>`);
        }
    }
    const fix = (v) => {
        if (typeof v === "string") {
            return gen.get(v) ?? v;
        }
        if (Array.isArray(v)) {
            return v.map(fix);
        }
        if (v && typeof v === "object") {
            return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fix(x)]));
        }
        return v;
    };
    const out = new Map();
    for (const o of objs) {
        const f = fix(o);
        if (f.kind === "Secret" && f.data) {
            f.data = Object.fromEntries(Object.entries(f.data).map(
                ([k, x]) => [k, Buffer.from(String(x).replace(/\s+/g, ""), "base64").toString("latin1")]));
        }
        out.set(`${f.kind}/${f.metadata?.namespace ?? ""}/${f.metadata?.name}`, f);
    }
    return out;
}

function compareSame(name, objs, otherFile) {
    let other;
    try {
        other = parse(name, otherFile);
    } catch (e) {
        fail(`${name} (second kustomize)`, e.message);
        return;
    }
    const a = normalized(objs);
    const b = normalized(other);
    for (const k of new Set([...a.keys(), ...b.keys()])) {
        if (!a.has(k) || !b.has(k)) {
            fail(`${name}: ${k}`, `rendered by ${a.has(k) ? "one" : "the other"} kustomize only`);
        } else if (!isDeepStrictEqual(a.get(k), b.get(k))) {
            fail(`${name}: ${k}`, "differs between the two kustomize versions");
        }
    }
}

// ----------------------------------------------------------------- main --

function parse(name, file) {
    const docs = parseAllDocuments(readFileSync(file, "utf8"), { uniqueKeys: true });
    const objs = [];
    for (const doc of docs) {
        if (doc.errors.length > 0) {
            throw new Error(`${file}: ${doc.errors.map((e) => e.message).join("; ")}`);
        }
        const o = doc.toJS();
        if (o !== null && o !== undefined) {
            objs.push(o);
        }
    }
    return objs;
}

for (const { name, file } of overlays) {
    const before = failures;
    let objs;
    try {
        objs = parse(name, file);
    } catch (e) {
        fail(name, e.message);
        continue;
    }
    let schemaOk = 0;
    for (const [i, o] of objs.entries()) {
        if (await validateSchema(`${name}: ${objId(o)} (document ${i + 1})`, o)) {
            schemaOk++;
        }
    }
    say(`${schemaOk === objs.length ? "ok" : "not ok"} - ${name}: ${schemaOk}/${objs.length} objects valid against the Kubernetes API schemas (${[...new Set(objs.map((o) => o.kind))].sort().join(", ")})`);
    const expect = EXPECT[name] ?? { externalSecrets: [] };
    const mark = failures;
    checkGeneral(name, objs, expect);
    checkRbcs(name, objs, expect);
    say(`${failures === mark ? "ok" : "not ok"} - ${name}: required objects and fields${EXPECT[name] ? "" : " (no overlay-specific expectations for this name)"}`);
    if (same.has(name)) {
        const m2 = failures;
        compareSame(name, objs, same.get(name));
        say(`${failures === m2 ? "ok" : "not ok"} - ${name}: the other kustomize renders the same objects`);
    }
    if (failures === before) {
        say(`ok - ${name}: valid`);
    }
}

process.exit(failures === 0 ? 0 : 1);
