import { createHash } from 'node:crypto';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { NotFoundError, UnavailableError, messageOf } from '../errors.js';
import { log } from '../log.js';
import type { RegistryHost } from './registry-config.js';

/**
 * A client of the distribution API v2 (https://distribution.github.io/distribution/spec/api/),
 * pull side only: manifests and blobs of one repository, from a list of hosts (mirrors first,
 * the registry last), with the token and basic auth challenges registries use.
 */

/** Credentials from PullImageRequest.auth (CRI AuthConfig). */
export interface Credentials {
  username: string;
  password: string;
  /** base64("user:password"), docker's config.json form. */
  auth: string;
  /** The registry host the credentials are for; empty: any host of this pull (containerd's ParseAuth). */
  serverAddress: string;
  /** An OAuth2 refresh token, exchanged at the token endpoint. */
  identityToken: string;
  /** A bearer token sent as is. */
  registryToken: string;
}

export const MANIFEST_TYPES = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
} as const;

/** Manifests larger than this are refused: real ones are a few kB (containerd caps at 4 MiB too). */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_REDIRECTS = 5;

export interface FetchedManifest {
  bytes: Buffer;
  mediaType: string;
  /** sha256 of the bytes, checked against the digest asked for. */
  digest: string;
}

interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses `Bearer realm="…",service="…",scope="…"` (RFC 7235 auth-params). */
export function parseChallenge(header: string): Challenge | undefined {
  const match = /^(\w+)\s*(.*)$/s.exec(header.trim());
  if (match === null) return undefined;
  const params: Record<string, string> = {};
  for (const param of (match[2] ?? '').matchAll(/(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g)) {
    params[(param[1] ?? '').toLowerCase()] = (param[2] ?? param[3] ?? '').replace(/\\(.)/g, '$1');
  }
  return { scheme: (match[1] ?? '').toLowerCase(), params };
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('aborted');
}

/** One GET, following redirects (blob storage often lives elsewhere); Authorization is not sent to another host. */
function get(url: string, host: RegistryHost, headers: Record<string, string>, signal: AbortSignal): Promise<IncomingMessage> {
  const attempt = (target: URL, sendHeaders: Record<string, string>, left: number): Promise<IncomingMessage> =>
    new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(abortError(signal));
        return;
      }
      const options = {
        method: 'GET',
        headers: { 'User-Agent': 'icetray', ...sendHeaders },
        signal,
        ...(target.protocol === 'https:'
          ? { rejectUnauthorized: !host.skipVerify, ...(host.ca.length > 0 ? { ca: host.ca } : {}) }
          : {}),
      };
      const req = (target.protocol === 'https:' ? httpsRequest : httpRequest)(target, options, (res) => {
        const location = res.headers.location;
        if (res.statusCode !== undefined && res.statusCode >= 300 && res.statusCode < 400 && location !== undefined) {
          res.resume();
          if (left === 0) {
            reject(new UnavailableError(`too many redirects fetching ${url}`));
            return;
          }
          const next = new URL(location, target);
          const { Authorization: _dropped, ...rest } = sendHeaders;
          resolve(attempt(next, next.host === target.host ? sendHeaders : rest, left - 1));
          return;
        }
        resolve(res);
      });
      req.on('error', (err) => {
        reject(signal.aborted ? err : new UnavailableError(`cannot reach ${target.origin}: ${messageOf(err)}`, { cause: err }));
      });
      req.end();
    });
  return attempt(new URL(url), headers, MAX_REDIRECTS);
}

async function readBody(res: IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res) {
    const buffer = chunk as Buffer;
    size += buffer.length;
    if (size > limit) {
      res.destroy();
      throw new UnavailableError(`response larger than ${limit} bytes`);
    }
    chunks.push(buffer);
  }
  return Buffer.concat(chunks);
}

/** The registry's own words from an error body ({"errors":[{"code","message"}]}), if any. */
async function registryError(res: IncomingMessage): Promise<string> {
  const body = await readBody(res, 64 * 1024).catch(() => Buffer.alloc(0));
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { errors?: { code?: string; message?: string }[] };
    const first = parsed.errors?.[0];
    if (first !== undefined) return `${first.code ?? ''} ${first.message ?? ''}`.trim();
  } catch {
    // not JSON: fall through to the status line
  }
  return `HTTP ${res.statusCode ?? 0}`;
}

export class RegistryClient {
  /** Authorization header values per host that worked (a token or basic credentials). */
  private readonly authorizations = new Map<string, string>();
  /** The host that answered last, asked first for the next request (blobs follow their manifest). */
  private preferred: RegistryHost | undefined;

  constructor(
    private readonly hosts: RegistryHost[],
    /** The registry the image is named under (credentials without a server address apply to it). */
    private readonly registry: string,
    private readonly repository: string,
    private readonly credentials: Credentials | undefined,
  ) {}

  private credentialsFor(host: RegistryHost): Credentials | undefined {
    const creds = this.credentials;
    if (creds === undefined) return undefined;
    const server = creds.serverAddress.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
    const registry = this.registry;
    if (
      server === '' ||
      server === host.host ||
      server === registry ||
      (server === 'index.docker.io' && registry === 'docker.io')
    )
      return creds;
    return undefined;
  }

  private basic(creds: Credentials): string | undefined {
    if (creds.auth !== '') return `Basic ${creds.auth}`;
    if (creds.username !== '') return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
    return undefined;
  }

  /** Answers a 401: fetches a token for a Bearer challenge, or uses basic credentials. */
  private async authorize(host: RegistryHost, challengeHeader: string | undefined, signal: AbortSignal): Promise<string> {
    const challenge = challengeHeader === undefined ? undefined : parseChallenge(challengeHeader);
    const creds = this.credentialsFor(host);
    if (challenge?.scheme === 'basic') {
      const basic = creds === undefined ? undefined : this.basic(creds);
      if (basic === undefined) throw new UnavailableError(`${host.host} asks for credentials and the pull has none`);
      return basic;
    }
    if (challenge?.scheme !== 'bearer' || challenge.params['realm'] === undefined)
      throw new UnavailableError(`${host.host} answered 401 without a usable WWW-Authenticate challenge`);
    if (creds !== undefined && creds.registryToken !== '') return `Bearer ${creds.registryToken}`;
    const realm = new URL(challenge.params['realm']);
    const service = challenge.params['service'];
    const scope = `repository:${this.repository}:pull`;
    if (service !== undefined) realm.searchParams.set('service', service);
    realm.searchParams.set('scope', scope);
    const headers: Record<string, string> = {};
    const basic = creds === undefined ? undefined : this.basic(creds);
    if (basic !== undefined) headers['Authorization'] = basic;
    if (creds !== undefined && creds.identityToken !== '') {
      // OAuth2 refresh-token grant (distribution's token spec, "oauth.md"), by query for a GET realm.
      realm.searchParams.set('grant_type', 'refresh_token');
      realm.searchParams.set('refresh_token', creds.identityToken);
      realm.searchParams.set('client_id', 'icetray');
    }
    const res = await get(realm.href, { ...host, headers: {} }, headers, signal);
    if (res.statusCode !== 200) {
      const why = await registryError(res);
      throw new UnavailableError(`token request to ${realm.origin}${realm.pathname} for ${scope} failed: ${why}`);
    }
    const body = JSON.parse((await readBody(res, 1024 * 1024)).toString('utf8')) as { token?: string; access_token?: string };
    const token = body.token ?? body.access_token;
    if (token === undefined || token === '') throw new UnavailableError(`token endpoint ${realm.origin} returned no token`);
    return `Bearer ${token}`;
  }

  /** GET on one host, answering an auth challenge once; returns a 2xx response or throws. */
  private async getOn(
    host: RegistryHost,
    path: string,
    accept: string | undefined,
    signal: AbortSignal,
  ): Promise<IncomingMessage> {
    const url = `${host.apiRoot}/${this.repository}/${path}`;
    const headers = (): Record<string, string> => {
      const sent: Record<string, string> = { ...host.headers };
      if (accept !== undefined) sent['Accept'] = accept;
      const authorization = this.authorizations.get(host.apiRoot);
      if (authorization !== undefined) sent['Authorization'] = authorization;
      return sent;
    };
    let res = await get(url, host, headers(), signal);
    if (res.statusCode === 401) {
      const challenge = res.headers['www-authenticate'];
      res.resume();
      this.authorizations.set(host.apiRoot, await this.authorize(host, challenge, signal));
      res = await get(url, host, headers(), signal);
    }
    const code = res.statusCode ?? 0;
    if (code >= 200 && code < 300) return res;
    const why = await registryError(res);
    if (code === 404) throw new NotFoundError(`${url}: not found (${why})`);
    throw new UnavailableError(`${url}: ${why}`);
  }

  /** Runs `fetch` on each host in order until one succeeds; the registry's own failure is the one thrown. */
  private async onHosts<T>(what: string, signal: AbortSignal, fetch: (host: RegistryHost) => Promise<T>): Promise<T> {
    const order = this.preferred === undefined ? this.hosts : [this.preferred, ...this.hosts.filter((h) => h !== this.preferred)];
    let failure: unknown;
    for (const host of order) {
      try {
        const result = await fetch(host);
        this.preferred = host;
        return result;
      } catch (err) {
        if (signal.aborted) throw abortError(signal);
        log.info(
          { host: host.apiRoot, what, error: messageOf(err) },
          host.upstream ? 'registry failed' : 'mirror failed, trying the next host',
        );
        if (failure === undefined || host.upstream) failure = err;
      }
    }
    throw failure instanceof Error ? failure : new UnavailableError(`no registry host to fetch ${what} from`);
  }

  /** A manifest or index by tag or digest; its bytes are checked against the digest when one is asked for. */
  manifest(reference: string, signal: AbortSignal): Promise<FetchedManifest> {
    const accept = Object.values(MANIFEST_TYPES).join(', ');
    return this.onHosts(`${this.repository} manifest ${reference}`, signal, async (host) => {
      const res = await this.getOn(host, `manifests/${reference}`, accept, signal);
      const bytes = await readBody(res, MAX_MANIFEST_BYTES);
      const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
      if (reference.startsWith('sha256:') && digest !== reference)
        throw new UnavailableError(`manifest ${reference} from ${host.host} has digest ${digest}: refusing it`);
      const header = (res.headers['content-type'] ?? '').split(';')[0]?.trim() ?? '';
      let mediaType = header;
      if (!Object.values<string>(MANIFEST_TYPES).includes(mediaType)) {
        // Some registries answer application/json: the manifest names its own type.
        const parsed = JSON.parse(bytes.toString('utf8')) as { mediaType?: string };
        mediaType = parsed.mediaType ?? '';
      }
      return { bytes, mediaType, digest };
    });
  }

  /** A blob's bytes as a stream; the caller verifies its digest while storing it. */
  blob(digest: string, signal: AbortSignal): Promise<IncomingMessage> {
    return this.onHosts(`${this.repository} blob ${digest}`, signal, (host) =>
      this.getOn(host, `blobs/${digest}`, undefined, signal),
    );
  }
}
