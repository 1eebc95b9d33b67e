"""The realism checks' time and output on 32 real training, 32 held-out and 32 synthetic cases of the 2 mm anatomy
grid (4 x 120 x 120 x 78, an ellipsoid brain of smooth texture with a tumour and a bright ET shell: the checks' cost depends on
the grid, not the content). Prints the whole output as JSON (stdout) and the two times (stderr):

    python realism_speed.py > new.json                       # at a commit
    git stash / checkout the commit before; python realism_speed.py > old.json; cmp old.json new.json
"""
import time, numpy as np, torch
from scipy import ndimage
from medidiff.eval import realism as rl
rng=np.random.default_rng(0)
N = 32
g=np.indices((120,120,78)).astype(np.float32)
c=np.array([60,60,39.])[:,None,None,None]
r=np.sqrt(((g-c)**2/np.array([45,50,32.])[:,None,None,None]**2).sum(0))
brain=(r<1).astype(np.float32)
def make(n, seed):
    rng=np.random.default_rng(seed)
    x=np.empty((n,4,120,120,78),np.float32)
    lab=np.zeros((n,3,120,120,78),np.float32)
    for i in range(n):
        noise=ndimage.gaussian_filter(rng.normal(size=(120,120,78)).astype(np.float32),2)
        for ch in range(4):
            x[i,ch]=brain*(0.2+0.3*noise+0.1*ch)*2-1+ (1-brain)*0 - (1-brain)
        t=np.sqrt(((g-(c+rng.normal(0,8,(3,1,1,1))))**2).sum(0))
        lab[i,0]=t<12; lab[i,1]=t<7; lab[i,2]=(t<7)&(t>4)
        x[i,1][lab[i,2]>0]=0.9
    return torch.from_numpy(x), torch.from_numpy(lab)
real,rl_lab=make(N,1); held,hl=make(N,2); syn,sl=make(N,3)
import json, time
t=time.time()
ref=rl.real_reference(real,held,real_labels=rl_lab,heldout_labels=hl)
t1=time.time()
out=rl.realism_checks_against(syn,ref,modalities=['t1n','t1c','t2w','t2f'],synthetic_labels=sl)
t2=time.time()
out.pop('spectra',None)
print(json.dumps(out,default=lambda o: o.tolist() if hasattr(o,'tolist') else str(o),sort_keys=True))
print(ref.floor_histogram.tolist(), ref.background['rms'].tolist()[:3], ref.pairwise[:3].tolist())
import sys; print('times', t1-t, t2-t1, file=sys.stderr)
