/** One page of a list RPC. */
export interface Page<T> {
  /** The items on this page. */
  readonly items: readonly T[];
  /** Empty on the last page. */
  readonly nextPageToken: string;
}

/**
 * Fetches every page of a paginated list, following `next_page_token` until
 * it comes back empty.
 *
 * @example
 * const zones = await collectPages(async (pageToken) => {
 *   const page = await admin.listZones({ pageToken, pageSize: 100 });
 *   return { items: page.zones, nextPageToken: page.nextPageToken };
 * });
 */
export async function collectPages<T>(fetchPage: (pageToken: string) => Promise<Page<T>>): Promise<T[]> {
  const items: T[] = [];
  const seen = new Set<string>();
  let pageToken = "";
  do {
    const page = await fetchPage(pageToken);
    items.push(...page.items);
    // A server handing back a token it already gave would loop forever.
    if (seen.has(page.nextPageToken)) throw new Error(`the server repeated page token ${page.nextPageToken}`);
    seen.add(page.nextPageToken);
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  return items;
}
