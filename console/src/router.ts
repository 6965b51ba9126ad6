import { useEffect, useState } from "preact/hooks";

/*
 * A router of the console's pages: `/` (the queue), `/tasks/{id}` (a task), `/devices`,
 * `/devices/{id}`, `/dead-letters`, `/sites`, `/rules`, `/reports`, `/emergency` (the emergency board),
 * `/map` and `/public` (the public page, no sign-in), with the history API.
 * The server answers index.html for every path outside the API (cli/runtime/console.ts), so a
 * reload or a shared link opens the same page.
 */

export type Route =
  | { readonly page: "queue" }
  | { readonly page: "task"; readonly id: string }
  | { readonly page: "signin" }
  | { readonly page: "devices" }
  | { readonly page: "device"; readonly id: string }
  | { readonly page: "dead-letters" }
  | { readonly page: "sites" }
  | { readonly page: "rules" }
  | { readonly page: "reports" }
  | { readonly page: "emergency" }
  | { readonly page: "map" }
  | { readonly page: "public" };

export function parseRoute(pathname: string): Route {
  const task = /^\/tasks\/([^/]+)\/?$/.exec(pathname);
  if (task?.[1] !== undefined) return { page: "task", id: decodeURIComponent(task[1]) };
  if (pathname === "/signin") return { page: "signin" };
  if (pathname === "/devices") return { page: "devices" };
  const device = /^\/devices\/([^/]+)\/?$/.exec(pathname);
  if (device?.[1] !== undefined) return { page: "device", id: decodeURIComponent(device[1]) };
  if (pathname === "/dead-letters") return { page: "dead-letters" };
  if (pathname === "/sites") return { page: "sites" };
  if (pathname === "/rules") return { page: "rules" };
  if (pathname === "/reports") return { page: "reports" };
  if (pathname === "/emergency") return { page: "emergency" };
  if (pathname === "/map") return { page: "map" };
  if (pathname === "/public") return { page: "public" };
  return { page: "queue" };
}

const listeners = new Set<() => void>();
window.addEventListener("popstate", () => listeners.forEach((l) => l()));

export function navigate(path: string, replace = false): void {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  window.scrollTo(0, 0);
  listeners.forEach((l) => l());
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.pathname));
  useEffect(() => {
    const update = () => setRoute(parseRoute(location.pathname));
    listeners.add(update);
    return () => void listeners.delete(update);
  }, []);
  return route;
}

/** A link that navigates without reloading (and still opens in a new tab with a modifier). */
export function onLink(path: string) {
  return (event: MouseEvent) => {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
    event.preventDefault();
    navigate(path);
  };
}
