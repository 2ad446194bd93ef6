// A run's artifact browser: a folder tree on the left, the chosen file on the right
// (text and JSON shown inline, images drawn, anything else offered for download).
import { artifactRoot, artifactUrl, listArtifacts } from "./api.js";
import { clear, errorBox, formatBytes, h } from "./dom.js";

const TEXT = /\.(txt|log|md|json|ya?ml|csv|tsv|py|sh|cfg|ini|toml|xml|html|js|css|mlmodel|jsonl)$|(^|\/)(MLmodel|MLproject|requirements\.txt|conda\.yaml|python_env\.yaml)$/i;
const IMAGE = /\.(png|jpe?g|gif|bmp|svg|webp)$/i;
const PREVIEW_BYTES = 1_000_000; // larger text files are offered for download only

export function artifactBrowser(run) {
  const root = artifactRoot(run.info.artifact_uri);
  if (root === null) {
    return h("p.muted", {}, `Artifacts at ${run.info.artifact_uri} are not served through the gateway's artifact proxy.`);
  }
  const tree = h("ul.tree");
  const preview = h("div.preview", {}, h("p.muted", {}, "Choose a file."));
  const view = h("div.artifacts", {}, h("div.tree-pane", {}, tree), preview);

  async function fill(list, path) {
    clear(list, h("li.muted", {}, "loading…"));
    try {
      const { files = [] } = await listArtifacts(root, path);
      files.sort((a, b) => Number(b.is_dir) - Number(a.is_dir) || a.path.localeCompare(b.path));
      clear(list, files.length ? files.map((file) => entry(path, file)) : h("li.muted", {}, path ? "empty folder" : "No artifacts."));
    } catch (error) {
      clear(list, h("li", {}, errorBox(error)));
    }
  }

  function entry(parent, file) {
    const name = file.path.split("/").pop();
    const path = parent ? `${parent}/${name}` : name;
    if (file.is_dir) {
      const children = h("ul");
      let open = false;
      const label = h("a.dir", { href: "#", dataset: { path }, onclick: (e) => {
        e.preventDefault();
        open = !open;
        label.classList.toggle("open", open);
        open ? fill(children, path) : clear(children);
      } }, name);
      return h("li", {}, label, children);
    }
    return h("li", {}, h("a.file", { href: "#", dataset: { path }, onclick: (e) => { e.preventDefault(); show(path, Number(file.file_size || 0)); } }, name),
      h("span.muted", {}, ` ${formatBytes(file.file_size)}`));
  }

  async function show(path, size) {
    const url = artifactUrl(root, path);
    const header = h("div.preview-head", {}, h("strong", {}, path), " ", h("span.muted", {}, formatBytes(size)), " ",
      h("a", { href: url, download: path.split("/").pop() }, "Download"));
    if (IMAGE.test(path)) {
      clear(preview, header, h("img.artifact-image", { src: url, alt: path }));
    } else if (TEXT.test(path) && size <= PREVIEW_BYTES) {
      clear(preview, header, h("p.muted", {}, "loading…"));
      try {
        const response = await fetch(url);
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        let text = await response.text();
        if (/\.json$/i.test(path)) {
          try {
            text = JSON.stringify(JSON.parse(text), null, 2);
          } catch {
            // not valid JSON: shown as it is
          }
        }
        clear(preview, header, h("pre.artifact-text", {}, text));
      } catch (error) {
        clear(preview, header, errorBox(error));
      }
    } else {
      clear(preview, header, h("p.muted", {}, "No preview for this file."));
    }
  }

  fill(tree, "");
  return view;
}
