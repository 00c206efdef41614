from common import *
from sklearn.linear_model import Ridge
dev=load('dev_routing'); gold=load('train_gold'); pro=load('train_routing'); Ed=E('dev_routing'); Eg=E('train_gold'); Ep=E('train_routing')
easy=np.array([np.mean(list(r['all_model_scores'].values())) for r in pro])
pg=np.array([ (r['strong_score'] if r['strong_score'] is not None else 0)-r['weak_score'] for r in pro])
weakfail=np.array([1-r['weak_score'] for r in pro])
yg=np.array([gain(r) for r in gold]); Fd=F([r['prompt'] for r in dev]); Fg=F([r['prompt'] for r in gold])
mu,sd=Fg.mean(0),Fg.std(0)+1e-6; Zg=(Fg-mu)/sd; Zd=(Fd-mu)/sd
oof=np.load('exp/subj_oof.npy'); pdv=np.load('exp/subj_dev.npy')
feats_g=[];feats_d=[]
for name,t in [('easy',easy),('progain',pg),('weakfail',weakfail)]:
    m=Ridge(alpha=10).fit(Ep,t); a=m.predict(Eg); b=m.predict(Ed); feats_g.append(a); feats_d.append(b)
    report(dev,-b if name=='easy' else b,f'pro-{name} alone')
Pg=np.stack(feats_g,1); Pd=np.stack(feats_d,1); ps=Pg.std(0)
for use in [[],[0],[1],[0,1,2]]:
    Xg=np.hstack([Eg,Zg,3*oof[:,None]]+[(Pg[:,use]/ps[use])] ); Xd=np.hstack([Ed,Zd,3*pdv[:,None]]+[(Pd[:,use]/ps[use])])
    m=Ridge(alpha=100).fit(Xg,yg); report(dev,m.predict(Xd),f'stack + {use}')
