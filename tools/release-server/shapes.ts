/**
 * GitHub REST JSON shapes for users, release assets and releases, with GitHub's key
 * order. Pure functions of the repo as read from disk and the API origin's URL.
 */
import { AssetInfo, ReleaseInfo, RepoInfo, stableId } from "./store"

function nodeId(prefix: string, id: number): string {
    const b = Buffer.alloc(8)
    b.writeUInt32BE(0x9400ce00, 0) // msgpack-ish header bytes like GitHub's "kwDO"
    b.writeUInt32BE(id, 4)
    return prefix + "_" + b.toString("base64url")
}

/** A "simple user" object (about 1 KB) as in `author` and `uploader`. */
export function userJson(apiUrl: string, login: string) {
    const id = stableId(`user:${login}`)
    const u = `${apiUrl}/users/${encodeURIComponent(login)}`
    return {
        login,
        id,
        node_id: nodeId("U", id),
        avatar_url: `https://avatars.githubusercontent.com/u/${id}?v=4`,
        gravatar_id: "",
        url: u,
        html_url: `https://github.com/${login}`,
        followers_url: `${u}/followers`,
        following_url: `${u}/following{/other_user}`,
        gists_url: `${u}/gists{/gist_id}`,
        starred_url: `${u}/starred{/owner}{/repo}`,
        subscriptions_url: `${u}/subscriptions`,
        organizations_url: `${u}/orgs`,
        repos_url: `${u}/repos`,
        events_url: `${u}/events{/privacy}`,
        received_events_url: `${u}/received_events`,
        type: "User",
        user_view_type: "public",
        site_admin: false,
    }
}

/** A release asset; `url` is the API asset URL, `digest` is "sha256:<hex>". */
export function assetJson(apiUrl: string, r: RepoInfo, rel: ReleaseInfo, a: AssetInfo) {
    const at = rel.publishedAt ?? rel.createdAt
    return {
        url: `${apiUrl}/repos/${r.owner}/${r.repo}/releases/assets/${a.id}`,
        id: a.id,
        node_id: nodeId("RA", a.id),
        name: a.name,
        label: a.label,
        uploader: userJson(apiUrl, r.owner),
        content_type: a.contentType,
        state: "uploaded",
        size: a.size,
        digest: `sha256:${a.sha256}`,
        download_count: 0, // constant so ETags stay stable across downloads
        created_at: at,
        updated_at: at,
        browser_download_url: `${apiUrl}/${r.owner}/${r.repo}/releases/download/${encodeURIComponent(rel.tag)}/${encodeURIComponent(a.name)}`,
    }
}

/** A release with all its assets, as GET /repos/{o}/{r}/releases/{id} returns it. */
export function releaseJson(apiUrl: string, r: RepoInfo, rel: ReleaseInfo) {
    const base = `${apiUrl}/repos/${r.owner}/${r.repo}`
    const tag = encodeURIComponent(rel.tag)
    return {
        url: `${base}/releases/${rel.id}`,
        assets_url: `${base}/releases/${rel.id}/assets`,
        upload_url: `${base}/releases/${rel.id}/assets{?name,label}`,
        html_url: `${apiUrl}/${r.owner}/${r.repo}/releases/tag/${tag}`,
        id: rel.id,
        author: userJson(apiUrl, r.owner),
        node_id: nodeId("RE", rel.id),
        tag_name: rel.tag,
        target_commitish: rel.targetCommitish,
        name: rel.name,
        draft: rel.draft,
        immutable: false,
        prerelease: rel.prerelease,
        created_at: rel.createdAt,
        updated_at: rel.publishedAt ?? rel.createdAt,
        published_at: rel.publishedAt,
        assets: rel.assets.map(a => assetJson(apiUrl, r, rel, a)),
        tarball_url: `${base}/tarball/${tag}`,
        zipball_url: `${base}/zipball/${tag}`,
        body: rel.body,
    }
}
