// @ts-check
// Moderator controls of the call page, loaded only for members whose token
// has the admin grant: mute and remove buttons on each remote tile, and
// "End for all" beside the hang-up button.
import { h, icons, iconButton, toast } from './ui.js';

/**
 * Shows or hides the controls after a join told us our grants.
 * @param {HTMLElement} slot where "End for all" goes @param {HTMLElement} grid
 */
export function enable(app, slot, grid) {
  let endAll = /** @type {HTMLElement|null} */ (document.getElementById('btn-end-all'));
  if (!endAll) {
    endAll = iconButton({ id: 'btn-end-all', icon: 'close', label: 'End for all', class: 'danger', onclick: () => app.client.endRoom() });
    slot.replaceWith(endAll);
  }
  endAll.hidden = !app.client.grants.admin;
  for (const t of grid.querySelectorAll('.tile.remote')) decorateTile(app, /** @type {HTMLElement} */ (t));
}

/**
 * Gives a remote tile its moderator buttons (mute, remove) when we have the
 * admin grant, or takes them away.
 * @param {HTMLElement} tile
 */
export function decorateTile(app, tile) {
  const client = app.client;
  let box = /** @type {HTMLElement|null} */ (tile.querySelector('.mod'));
  if (!client.grants.admin) {
    if (box) box.remove();
    return;
  }
  const id = tile.dataset.peerId;
  if (!box) {
    box = h('div', { class: 'mod', role: 'group' },
      h('button', { type: 'button', class: 'btn small icon mod-mute', html: icons.micOff, onclick: () => {
        client.muteMember(id, 'audio');
        toast(`${tile.dataset.name} muted`, 'ok');
      } }),
      h('button', { type: 'button', class: 'btn small icon danger mod-remove', html: icons.close, onclick: () => client.removeMember(id) }));
    tile.append(box);
  }
  const name = tile.dataset.name;
  box.setAttribute('aria-label', `Moderate ${name}`);
  for (const [cls, label] of [['.mod-mute', `Mute ${name} for everyone`], ['.mod-remove', `Remove ${name} from the call`]]) {
    const b = box.querySelector(cls);
    b.setAttribute('aria-label', label);
    b.setAttribute('title', label);
  }
}
